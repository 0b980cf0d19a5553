//! PDF: the page count and encryption read first, then the text page by
//! page, each page a section.

use crate::{Limits, Refusal, Section};

pub(crate) fn extract(
    bytes: &[u8],
    limits: &Limits,
) -> Result<(Option<u32>, Vec<Section>), Refusal> {
    let mut doc = lopdf::Document::load_mem(bytes)
        .map_err(|e| Refusal::Unreadable(format!("the PDF cannot be parsed ({e})")))?;
    if doc.is_encrypted() && doc.decrypt("").is_err() {
        return Err(Refusal::Unreadable(
            "the PDF is encrypted with a password".into(),
        ));
    }
    let pages = doc.get_pages();
    let count = u32::try_from(pages.len()).unwrap_or(u32::MAX);
    if count == 0 {
        return Err(Refusal::Unreadable("the PDF has no pages".into()));
    }
    if count > limits.max_pages {
        return Err(Refusal::TooLarge(format!(
            "the PDF has {count} pages; the limit is {}",
            limits.max_pages
        )));
    }
    let mut sections = Vec::with_capacity(pages.len());
    let mut total = 0;
    for &number in pages.keys() {
        let mut text = String::new();
        {
            let mut output = pdf_extract::PlainTextOutput::new(&mut text);
            pdf_extract::output_doc_page(&doc, &mut output, number).map_err(|e| {
                Refusal::Unreadable(format!("page {number} of the PDF cannot be read ({e})"))
            })?;
        }
        total += text.len();
        // Stop reading once over: the caller refuses it anyway.
        if total > limits.max_text_bytes {
            return Err(Refusal::TooLarge(format!(
                "its text is over {} bytes, the limit, by page {number}",
                limits.max_text_bytes
            )));
        }
        sections.push(Section {
            page: Some(number),
            text,
        });
    }
    Ok((Some(count), sections))
}
