//! Text out of uploaded files.
//!
//! [`detect`] tells the format from the content (magic bytes, then a parse),
//! never from the name or declared type; a name whose extension promises
//! another format is refused. [`extract`] reads the text in [`Section`]s
//! that follow the format's structure: a PDF's pages, a Word document's
//! headings and page breaks, HTML's and Markdown's headings. Every bound
//! ([`Limits`]) is checked before the work it bounds.
//!
//! Parsers of hostile input can loop, recurse without end or allocate
//! without bound whatever their checks; the service therefore runs this in
//! a child process with a time and memory limit (`analyzer extract`).

mod docx;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
mod html;
mod markdown;
mod pdf;

use serde::{Deserialize, Serialize};

/// The formats read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// PDF (`%PDF-`).
    Pdf,
    /// Word 2007+ (`.docx`: a ZIP with `word/document.xml`).
    Docx,
    /// HTML.
    Html,
    /// Markdown.
    Markdown,
    /// Plain UTF-8 text.
    Text,
}

impl Format {
    /// Its media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Pdf => "application/pdf",
            Format::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
            Format::Html => "text/html",
            Format::Markdown => "text/markdown",
            Format::Text => "text/plain",
        }
    }

    /// Its usual name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Pdf => "PDF",
            Format::Docx => "Word (DOCX)",
            Format::Html => "HTML",
            Format::Markdown => "Markdown",
            Format::Text => "plain text",
        }
    }

    /// Whether the format is one of the text ones, which a file's content
    /// may show as another of them (a `.txt` of Markdown is fine).
    fn is_text(self) -> bool {
        matches!(self, Format::Html | Format::Markdown | Format::Text)
    }
}

/// Bounds of one extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Most pages of a PDF.
    pub max_pages: u32,
    /// Most bytes of text extracted.
    pub max_text_bytes: usize,
    /// Most bytes a compressed part (a DOCX's XML) may expand to.
    pub max_expanded_bytes: u64,
}

/// A stretch of text that chunks do not cross: a page, or a heading's
/// section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// The page it is on, from 1, where the format has pages.
    pub page: Option<u32>,
    /// Its text (a heading's section starts with the heading).
    pub text: String,
}

/// What a file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extracted {
    /// Its format, from its content.
    pub format: Format,
    /// Its pages, where the format has them.
    pub pages: Option<u32>,
    /// Its text, in order; none empty.
    pub sections: Vec<Section>,
}

impl Extracted {
    /// The whole text: the sections, a blank line between.
    pub fn text(&self) -> String {
        self.sections
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join("\n\n")
    }
}

/// Why a file is refused; the text names the reason, for the uploader.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Refusal {
    /// Not a format read here, or not what its name says (415).
    #[error("{0}")]
    Unsupported(String),
    /// A supported format that cannot be read: empty, corrupt, encrypted,
    /// or without text (422).
    #[error("{0}")]
    Unreadable(String),
    /// Over a bound: pages or text (413).
    #[error("{0}")]
    TooLarge(String),
}

/// The format of `bytes`, from their content; `name` (the uploaded file's
/// name) only has to agree with it.
pub fn detect(bytes: &[u8], name: &str) -> Result<Format, Refusal> {
    let found = sniff(bytes)?;
    if let Some(named) = named_format(name) {
        let agrees = named == found || (named.is_text() && found.is_text());
        if !agrees {
            return Err(Refusal::Unsupported(format!(
                "its name says {} but its content is {}",
                named.name(),
                found.name()
            )));
        }
    }
    Ok(found)
}

/// The format the content shows.
fn sniff(bytes: &[u8]) -> Result<Format, Refusal> {
    if bytes.is_empty() {
        return Err(Refusal::Unreadable("the file is empty".into()));
    }
    // The PDF header may follow up to 1 KiB of junk (ISO 32000-1, 7.5.2).
    if bytes[..bytes.len().min(1024)]
        .windows(5)
        .any(|w| w == b"%PDF-")
    {
        return Ok(Format::Pdf);
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return if docx::is_docx(bytes) {
            Ok(Format::Docx)
        } else {
            Err(Refusal::Unsupported(
                "a ZIP archive that is not a Word (DOCX) document".into(),
            ))
        };
    }
    for (magic, what) in BINARY_MAGIC {
        if bytes.starts_with(magic) {
            return Err(Refusal::Unsupported(format!("{what} is not supported")));
        }
    }
    let text = text_of(bytes)
        .ok_or_else(|| Refusal::Unsupported("binary content of an unsupported type".into()))?;
    Ok(if html::looks_like_html(text) {
        Format::Html
    } else if markdown::looks_like_markdown(text) {
        Format::Markdown
    } else {
        Format::Text
    })
}

/// Formats told apart by their first bytes, to name them in a refusal.
const BINARY_MAGIC: [(&[u8], &str); 8] = [
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\xd0\xcf\x11\xe0", "a legacy Office document (.doc, .xls)"),
    (b"{\\rtf", "RTF"),
    (b"\x7fELF", "an executable"),
    (b"MZ", "an executable"),
    (b"\x1f\x8b", "a gzip archive"),
];

/// The format a file name's extension promises, if it names one.
fn named_format(name: &str) -> Option<Format> {
    let extension = name.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match extension.as_str() {
        "pdf" => Format::Pdf,
        "docx" => Format::Docx,
        "html" | "htm" | "xhtml" => Format::Html,
        "md" | "markdown" => Format::Markdown,
        "txt" | "text" => Format::Text,
        _ => return None,
    })
}

/// `bytes` as UTF-8 text without its byte-order mark, if they are text:
/// valid UTF-8 without NUL.
fn text_of(bytes: &[u8]) -> Option<&str> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).ok()?;
    (!text.contains('\0')).then_some(text)
}

/// Read the text of `bytes`, of `format`, within `limits`.
pub fn extract(format: Format, bytes: &[u8], limits: &Limits) -> Result<Extracted, Refusal> {
    let (pages, sections) = match format {
        Format::Pdf => pdf::extract(bytes, limits)?,
        Format::Docx => docx::extract(bytes, limits)?,
        Format::Html => (None, html::extract(text(bytes)?)),
        Format::Markdown => (None, markdown::extract(text(bytes)?)),
        Format::Text => (
            None,
            vec![Section {
                page: None,
                text: text(bytes)?.to_owned(),
            }],
        ),
    };
    let sections: Vec<Section> = sections
        .into_iter()
        .map(|s| Section {
            page: s.page,
            text: tidy(&s.text),
        })
        .filter(|s| !s.text.is_empty())
        .collect();
    if sections.is_empty() {
        return Err(Refusal::Unreadable(match format {
            Format::Pdf => "the PDF has no text (scanned pages need OCR, which is not done)".into(),
            _ => "the file has no text".into(),
        }));
    }
    let extracted = Extracted {
        format,
        pages,
        sections,
    };
    let bytes = extracted
        .sections
        .iter()
        .map(|s| s.text.len())
        .sum::<usize>();
    if bytes > limits.max_text_bytes {
        return Err(Refusal::TooLarge(format!(
            "its text is {bytes} bytes; the limit is {}",
            limits.max_text_bytes
        )));
    }
    Ok(extracted)
}

fn text(bytes: &[u8]) -> Result<&str, Refusal> {
    text_of(bytes).ok_or_else(|| Refusal::Unreadable("the text is not UTF-8".into()))
}

/// Trim each line's trailing space, collapse runs of blank lines to one,
/// and trim the whole.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_content_decides_the_format_and_a_lying_name_is_refused() {
        assert_eq!(detect(b"%PDF-1.7\n...", "a.pdf"), Ok(Format::Pdf));
        assert_eq!(
            detect(b"<!DOCTYPE html><html><body>Hi</body></html>", "page"),
            Ok(Format::Html)
        );
        assert_eq!(
            detect(b"# Title\n\nSome *text*.", "notes.txt"),
            Ok(Format::Markdown)
        );
        assert_eq!(detect(b"just words", "notes.md"), Ok(Format::Text));
        assert!(matches!(
            detect(b"just words", "report.pdf"),
            Err(Refusal::Unsupported(m)) if m.contains("PDF")
        ));
        assert!(matches!(
            detect(b"%PDF-1.4 ...", "notes.txt"),
            Err(Refusal::Unsupported(_))
        ));
        assert!(matches!(
            detect(b"\x89PNG\r\n\x1a\n....", "x.png"),
            Err(Refusal::Unsupported(m)) if m.contains("PNG")
        ));
        assert!(matches!(
            detect(b"\x00\x01\x02\xff", "blob"),
            Err(Refusal::Unsupported(_))
        ));
        assert!(matches!(detect(b"", "a.txt"), Err(Refusal::Unreadable(_))));
    }

    #[test]
    fn text_over_the_bound_is_refused() {
        let limits = Limits {
            max_pages: 10,
            max_text_bytes: 10,
            max_expanded_bytes: 1000,
        };
        assert!(matches!(
            extract(Format::Text, b"more than ten bytes", &limits),
            Err(Refusal::TooLarge(_))
        ));
        assert!(matches!(
            extract(Format::Text, b" \n \n", &limits),
            Err(Refusal::Unreadable(_))
        ));
    }

    fn limits() -> Limits {
        Limits {
            max_pages: 100,
            max_text_bytes: 1 << 20,
            max_expanded_bytes: 1 << 20,
        }
    }

    fn read(bytes: &[u8], name: &str) -> Result<Extracted, Refusal> {
        extract(detect(bytes, name)?, bytes, &limits())
    }

    #[test]
    fn a_pdf_is_read_page_by_page() {
        let bytes = fixtures::pdf(&[
            "Harbour crane manual\nInspect weekly.",
            "Second page: load chart.",
        ]);
        let got = read(&bytes, "manual.pdf").expect("read");
        assert_eq!(got.format, Format::Pdf);
        assert_eq!(got.pages, Some(2));
        assert_eq!(got.sections.len(), 2);
        assert_eq!(got.sections[1].page, Some(2));
        assert!(got.sections[0].text.contains("Inspect weekly."), "{got:?}");
        assert!(got.sections[1].text.contains("load chart"), "{got:?}");
    }

    #[test]
    fn hostile_and_broken_pdfs_are_refused_with_their_reason() {
        let encrypted = read(&fixtures::encrypted_pdf("secret text"), "a.pdf");
        assert!(
            matches!(&encrypted, Err(Refusal::Unreadable(m)) if m.contains("encrypted")),
            "{encrypted:?}"
        );
        let corrupt = read(b"%PDF-1.4\nthis is not a PDF body", "a.pdf");
        assert!(
            matches!(corrupt, Err(Refusal::Unreadable(_))),
            "{corrupt:?}"
        );
        let pages: Vec<&str> = vec!["x"; 101];
        let long = read(&fixtures::pdf(&pages), "long.pdf");
        assert!(matches!(long, Err(Refusal::TooLarge(_))), "{long:?}");
    }

    #[test]
    fn a_word_document_is_read_by_heading_and_page() {
        use fixtures::Paragraph::{Heading, PageBreak, Text};
        let bytes = fixtures::docx(&[
            Heading("Safety"),
            Text("Wear a helmet."),
            PageBreak,
            Heading("Cranes"),
            Text("Inspect weekly."),
        ]);
        let got = read(&bytes, "handbook.docx").expect("read");
        assert_eq!(got.format, Format::Docx);
        let sections: Vec<(Option<u32>, &str)> = got
            .sections
            .iter()
            .map(|s| (s.page, s.text.as_str()))
            .collect();
        assert_eq!(
            sections,
            [
                (Some(1), "Safety\nWear a helmet."),
                (Some(2), "Cranes\nInspect weekly.")
            ]
        );
        let bomb = read(&fixtures::docx_bomb(2 << 20), "bomb.docx");
        assert!(
            matches!(&bomb, Err(Refusal::Unreadable(m)) if m.contains("expands")),
            "{bomb:?}"
        );
        let zip = read(&fixtures::plain_zip(), "x.docx");
        assert!(matches!(zip, Err(Refusal::Unsupported(_))), "{zip:?}");
    }

    #[test]
    fn tidy_keeps_paragraphs_and_drops_blank_runs() {
        assert_eq!(tidy("  a  \n\n\n\nb\nc \n\n"), "  a\n\nb\nc");
    }
}
