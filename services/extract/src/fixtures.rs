//! Real files made on the spot, for tests here and in `tests/`: PDFs
//! (lopdf writes them, with Helvetica text), Word documents (a ZIP of
//! WordprocessingML), and the hostile ones: encrypted, recursive, bombs.

use std::io::{Cursor, Write as _};

use lopdf::content::{Content, Operation};
use lopdf::{Dictionary, Document, Object, ObjectId, Stream, dictionary};

/// A PDF with one page per entry of `pages`, each line of an entry a line
/// of text on that page.
pub fn pdf(pages: &[&str]) -> Vec<u8> {
    let (mut doc, _) = pdf_document(pages);
    save(&mut doc)
}

/// A PDF encrypted with the user password `secret` (RC4, 128 bits).
pub fn encrypted_pdf(text: &str) -> Vec<u8> {
    let (mut doc, _) = pdf_document(&[text]);
    let id = Object::String(
        b"analyzer-fixture".to_vec(),
        lopdf::StringFormat::Hexadecimal,
    );
    doc.trailer.set("ID", vec![id.clone(), id]);
    let version = lopdf::EncryptionVersion::V2 {
        document: &doc,
        owner_password: "owner",
        user_password: "secret",
        key_length: 128,
        permissions: lopdf::Permissions::all(),
    };
    let state = lopdf::EncryptionState::try_from(version).expect("an encryption state");
    doc.encrypt(&state).expect("encrypted");
    save(&mut doc)
}

/// A PDF whose page tree holds itself: a reader that walks it naively
/// never ends.
pub fn recursive_pdf() -> Vec<u8> {
    let (mut doc, pages_id) = pdf_document(&["A page."]);
    if let Ok(Object::Dictionary(pages)) = doc.get_object_mut(pages_id) {
        pages.set("Kids", vec![Object::Reference(pages_id)]);
        pages.set("Count", 1_000_000);
    }
    save(&mut doc)
}

fn pdf_document(pages: &[&str]) -> (Document, ObjectId) {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "Type1",
        "BaseFont" => "Helvetica",
    });
    let resources_id = doc.add_object(dictionary! {
        "Font" => dictionary! { "F1" => font_id },
    });
    let mut kids = Vec::new();
    for text in pages {
        let mut operations = vec![
            Operation::new("BT", vec![]),
            Operation::new("Tf", vec!["F1".into(), 11.into()]),
            Operation::new("TL", vec![14.into()]),
            Operation::new("Td", vec![72.into(), 770.into()]),
        ];
        for line in text.lines() {
            operations.push(Operation::new("Tj", vec![Object::string_literal(line)]));
            operations.push(Operation::new("T*", vec![]));
        }
        operations.push(Operation::new("ET", vec![]));
        let content = Content { operations };
        let content_id = doc.add_object(Stream::new(
            Dictionary::new(),
            content.encode().expect("a content stream"),
        ));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "Contents" => content_id,
        });
        kids.push(Object::Reference(page_id));
    }
    let count = i64::try_from(kids.len()).unwrap_or(i64::MAX);
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => kids,
            "Count" => count,
            "Resources" => resources_id,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let catalog_id = doc.add_object(dictionary! {
        "Type" => "Catalog",
        "Pages" => pages_id,
    });
    doc.trailer.set("Root", catalog_id);
    (doc, pages_id)
}

fn save(doc: &mut Document) -> Vec<u8> {
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).expect("a PDF");
    bytes
}

/// A paragraph of a Word document.
pub enum Paragraph<'a> {
    /// A heading (style `Heading1`).
    Heading(&'a str),
    /// Body text.
    Text(&'a str),
    /// A page break.
    PageBreak,
}

/// A Word document of these paragraphs.
pub fn docx(paragraphs: &[Paragraph<'_>]) -> Vec<u8> {
    let mut body = String::new();
    for p in paragraphs {
        body.push_str(&match p {
            Paragraph::Heading(text) => format!(
                r#"<w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>{}</w:t></w:r></w:p>"#,
                escape(text)
            ),
            Paragraph::Text(text) => format!(
                r#"<w:p><w:r><w:t xml:space="preserve">{}</w:t></w:r></w:p>"#,
                escape(text)
            ),
            Paragraph::PageBreak => r#"<w:p><w:r><w:br w:type="page"/></w:r></w:p>"#.to_owned(),
        });
    }
    docx_with_body(body.as_bytes(), 1)
}

/// A Word document whose body expands to `expanded` bytes, rounded up to
/// 64 KiB (spaces, which compress about a thousand to one).
pub fn docx_bomb(expanded: usize) -> Vec<u8> {
    const BLOCK: usize = 64 * 1024;
    docx_with_body(&[b' '; BLOCK], expanded.div_ceil(BLOCK))
}

/// A Word document whose body is `body` repeated `times` times inside
/// `<w:body>`.
fn docx_with_body(body: &[u8], times: usize) -> Vec<u8> {
    let mut archive = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    archive
        .start_file("[Content_Types].xml", options)
        .expect("an entry");
    archive
        .write_all(CONTENT_TYPES.as_bytes())
        .expect("written");
    archive
        .start_file("word/document.xml", options)
        .expect("an entry");
    archive
        .write_all(
            br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>"#,
        )
        .expect("written");
    for _ in 0..times {
        archive.write_all(body).expect("written");
    }
    archive
        .write_all(b"</w:body></w:document>")
        .expect("written");
    archive.finish().expect("an archive").into_inner()
}

/// A ZIP archive that is not a Word document.
pub fn plain_zip() -> Vec<u8> {
    let mut archive = zip::ZipWriter::new(Cursor::new(Vec::new()));
    archive
        .start_file("notes.txt", zip::write::SimpleFileOptions::default())
        .expect("an entry");
    archive.write_all(b"not a document").expect("written");
    archive.finish().expect("an archive").into_inner()
}

const CONTENT_TYPES: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
