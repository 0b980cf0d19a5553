//! HTML: the visible text of the body, without scripts, styles,
//! navigation, headers, footers and asides; sections at headings.

use scraper::{Html, Node};

use crate::Section;

/// Elements whose text is not the page's content.
const SKIPPED: [&str; 12] = [
    "script", "style", "noscript", "template", "nav", "header", "footer", "aside", "svg", "iframe",
    "object", "head",
];

/// Elements that end a line of text.
const BLOCKS: [&str; 22] = [
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "tr",
    "table",
    "section",
    "article",
    "main",
    "blockquote",
    "pre",
    "dd",
    "dt",
    "dl",
    "figcaption",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
];

/// Whether text reads as an HTML document or fragment.
pub(crate) fn looks_like_html(text: &str) -> bool {
    let start: String = text
        .trim_start()
        .chars()
        .take(1024)
        .collect::<String>()
        .to_ascii_lowercase();
    start.starts_with("<!doctype html")
        || start.starts_with("<html")
        || (start.starts_with('<')
            && ["<body", "<head", "<div", "<p>", "<p ", "<article", "<table"]
                .iter()
                .any(|tag| start.contains(tag)))
}

pub(crate) fn extract(text: &str) -> Vec<Section> {
    let document = Html::parse_document(text);
    let mut walk = Walk {
        sections: vec![String::new()],
    };
    walk.node(document.tree.root());
    walk.sections
        .into_iter()
        .map(|text| Section { page: None, text })
        .collect()
}

struct Walk {
    sections: Vec<String>,
}

impl Walk {
    fn current(&mut self) -> &mut String {
        if self.sections.is_empty() {
            self.sections.push(String::new());
        }
        let last = self.sections.len() - 1;
        &mut self.sections[last]
    }

    fn node(&mut self, node: ego_tree::NodeRef<'_, Node>) {
        match node.value() {
            Node::Text(text) => {
                let raw: &str = &text.text;
                let words = raw.split_whitespace().collect::<Vec<_>>().join(" ");
                let current = self.current();
                // Space between nodes only where the markup has it
                // (`<b>helmet</b>.` is one word and a stop).
                if raw.starts_with(char::is_whitespace)
                    && !current.is_empty()
                    && !current.ends_with(['\n', ' '])
                {
                    current.push(' ');
                }
                current.push_str(&words);
                if !words.is_empty() && raw.ends_with(char::is_whitespace) {
                    current.push(' ');
                }
            }
            Node::Element(element) => {
                let name = element.name();
                if SKIPPED.contains(&name) {
                    return;
                }
                let heading = matches!(name, "h1" | "h2" | "h3" | "h4" | "h5" | "h6");
                if heading {
                    self.sections.push(String::new());
                }
                for child in node.children() {
                    self.node(child);
                }
                if heading || BLOCKS.contains(&name) {
                    self.current().push('\n');
                }
            }
            _ => {
                for child in node.children() {
                    self.node(child);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_styles_and_navigation_are_dropped_and_headings_start_sections() {
        let page = r#"<!DOCTYPE html><html><head><title>T</title><style>p{color:red}</style></head>
            <body><nav><a href="/">Home</a> <a href="/about">About</a></nav>
            <p>Intro text.</p><script>alert("x")</script>
            <h2>Safety</h2><p>Wear a <b>helmet</b>.</p><footer>Copyright</footer></body></html>"#;
        let sections = extract(page);
        let texts: Vec<&str> = sections.iter().map(|s| s.text.trim()).collect();
        assert_eq!(texts, ["Intro text.", "Safety\nWear a helmet."]);
        assert!(looks_like_html(page));
        assert!(!looks_like_html("a < b and b > c"));
    }
}
