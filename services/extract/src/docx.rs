//! DOCX: `word/document.xml` read out of the archive within a bound on its
//! expanded size (a decompression bomb stops there), then its paragraphs:
//! a heading style starts a section, and so does a page break (Word's
//! explicit ones and those it recorded when it last laid the document out).

use std::io::{Cursor, Read as _};

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use crate::{Limits, Refusal, Section};

const BODY: &str = "word/document.xml";

/// Whether a ZIP archive holds a Word document's body.
pub(crate) fn is_docx(bytes: &[u8]) -> bool {
    zip::ZipArchive::new(Cursor::new(bytes))
        .is_ok_and(|archive| archive.index_for_name(BODY).is_some())
}

pub(crate) fn extract(
    bytes: &[u8],
    limits: &Limits,
) -> Result<(Option<u32>, Vec<Section>), Refusal> {
    let xml = body(bytes, limits.max_expanded_bytes)?;
    paragraphs(&xml)
}

/// The document's XML, expanded no further than `max` bytes.
fn body(bytes: &[u8], max: u64) -> Result<Vec<u8>, Refusal> {
    let corrupt = |e: &dyn std::fmt::Display| {
        Refusal::Unreadable(format!("the DOCX archive is corrupt ({e})"))
    };
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| corrupt(&e))?;
    let entry = archive.by_name(BODY).map_err(|e| match e {
        zip::result::ZipError::UnsupportedArchive(m) if m.contains("assword") => {
            Refusal::Unreadable("the document is encrypted with a password".into())
        }
        e => corrupt(&e),
    })?;
    let bomb = || {
        Refusal::Unreadable(format!(
            "the document expands to more than {max} bytes (a decompression bomb?)"
        ))
    };
    // The declared size is checked first, the bytes read after (a header
    // may lie about the size).
    if entry.size() > max {
        return Err(bomb());
    }
    let mut xml = Vec::new();
    entry
        .take(max + 1)
        .read_to_end(&mut xml)
        .map_err(|e| corrupt(&e))?;
    if xml.len() as u64 > max {
        return Err(bomb());
    }
    Ok(xml)
}

/// What the walk through the paragraphs has seen.
#[derive(Default)]
struct Walk {
    sections: Vec<Section>,
    page: u32,
    paged: bool,
    paragraph: String,
    heading: bool,
}

impl Walk {
    fn section(&mut self) -> &mut Section {
        let page = self.page;
        if self.sections.last().is_none_or(|s| s.page != Some(page)) {
            self.sections.push(Section {
                page: Some(page),
                text: String::new(),
            });
        }
        let last = self.sections.len() - 1;
        &mut self.sections[last]
    }

    fn end_paragraph(&mut self) {
        let text = std::mem::take(&mut self.paragraph);
        if self.heading {
            let page = self.page;
            self.sections.push(Section {
                page: Some(page),
                text: String::new(),
            });
        }
        self.heading = false;
        let section = self.section();
        section.text.push_str(&text);
        section.text.push('\n');
    }

    fn page_break(&mut self) {
        self.end_paragraph_part();
        self.page += 1;
        self.paged = true;
    }

    /// At a page break inside a paragraph: what came before stays on the
    /// page it was on.
    fn end_paragraph_part(&mut self) {
        if !self.paragraph.is_empty() {
            let text = std::mem::take(&mut self.paragraph);
            let section = self.section();
            section.text.push_str(&text);
            section.text.push('\n');
        }
    }
}

fn paragraphs(xml: &[u8]) -> Result<(Option<u32>, Vec<Section>), Refusal> {
    let mut reader = Reader::from_reader(xml);
    let mut walk = Walk {
        page: 1,
        ..Walk::default()
    };
    let mut in_text = false;
    let mut buf = Vec::new();
    let malformed = |e: &dyn std::fmt::Display| {
        Refusal::Unreadable(format!("the document's XML is malformed ({e})"))
    };
    loop {
        match reader
            .read_event_into(&mut buf)
            .map_err(|e| malformed(&e))?
        {
            Event::Start(e) => {
                in_text |= e.local_name().as_ref() == "t";
                element(&mut walk, &e);
            }
            Event::Empty(e) => element(&mut walk, &e),
            Event::End(e) => match e.local_name().as_ref() {
                "t" => in_text = false,
                "p" => walk.end_paragraph(),
                _ => {}
            },
            Event::Text(e) if in_text => walk.paragraph.push_str(&e.xml10_content()),
            Event::GeneralRef(e) if in_text => {
                let resolved = match e.resolve_char_ref().map_err(|e| malformed(&e))? {
                    Some(c) => Some(c.to_string()),
                    None => quick_xml::escape::resolve_predefined_entity(&e).map(str::to_owned),
                };
                walk.paragraph
                    .push_str(resolved.as_deref().unwrap_or_default());
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    walk.end_paragraph_part();
    let pages = walk.paged.then_some(walk.page);
    let mut sections = walk.sections;
    if !walk.paged {
        sections.iter_mut().for_each(|s| s.page = None);
    }
    Ok((pages, sections))
}

/// A start or empty element inside a paragraph: style, tab, break.
fn element(walk: &mut Walk, e: &BytesStart<'_>) {
    match e.local_name().as_ref() {
        "pStyle" => {
            let style = attribute(e, "val").unwrap_or_default().to_ascii_lowercase();
            walk.heading |= style.starts_with("heading") || style == "title";
        }
        "tab" => walk.paragraph.push('\t'),
        "br" => {
            if attribute(e, "type").as_deref() == Some("page") {
                walk.page_break();
            } else {
                walk.paragraph.push('\n');
            }
        }
        "lastRenderedPageBreak" => walk.page_break(),
        _ => {}
    }
}

/// The value of the attribute whose local name is `name` (`w:val` → `val`).
fn attribute(e: &BytesStart<'_>, name: &str) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == name)
        .map(|a| a.value.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: &str = r#"xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main""#;

    #[test]
    fn headings_and_page_breaks_start_sections() {
        let xml = format!(
            r#"<w:document {W}><w:body>
            <w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>Safety</w:t></w:r></w:p>
            <w:p><w:r><w:t xml:space="preserve">Wear a helmet &amp; boots.</w:t></w:r></w:p>
            <w:p><w:r><w:br w:type="page"/><w:t>Second page.</w:t></w:r></w:p>
            </w:body></w:document>"#
        );
        let (pages, sections) = paragraphs(xml.as_bytes()).expect("parsed");
        assert_eq!(pages, Some(2));
        let got: Vec<(Option<u32>, &str)> =
            sections.iter().map(|s| (s.page, s.text.trim())).collect();
        assert_eq!(
            got,
            [
                (Some(1), "Safety\nWear a helmet & boots."),
                (Some(2), "Second page.")
            ]
        );
    }

    #[test]
    fn without_page_breaks_no_page_is_claimed() {
        let xml = format!(
            r#"<w:document {W}><w:body><w:p><w:r><w:t>One.</w:t></w:r></w:p></w:body></w:document>"#
        );
        let (pages, sections) = paragraphs(xml.as_bytes()).expect("parsed");
        assert_eq!(pages, None);
        assert_eq!(sections[0].page, None);
    }
}
