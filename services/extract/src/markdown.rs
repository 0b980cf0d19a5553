//! Markdown: sections at ATX headings (`#` to `######`) outside code
//! fences; the text is kept as written.

use crate::Section;

/// Whether text reads as Markdown rather than plain text: a heading, a
/// code fence, a link or emphasis.
pub(crate) fn looks_like_markdown(text: &str) -> bool {
    text.lines().take(2000).any(|line| {
        let line = line.trim_start();
        heading_level(line).is_some()
            || line.starts_with("```")
            || line.contains("](")
            || line.contains("**")
    })
}

/// The level of an ATX heading line.
fn heading_level(line: &str) -> Option<usize> {
    let level = line.chars().take_while(|c| *c == '#').count();
    ((1..=6).contains(&level) && line[level..].starts_with(' ')).then_some(level)
}

pub(crate) fn extract(text: &str) -> Vec<Section> {
    let mut sections = vec![String::new()];
    let mut fenced = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
        } else if !fenced && heading_level(trimmed).is_some() {
            sections.push(String::new());
        }
        if let Some(current) = sections.last_mut() {
            current.push_str(line);
            current.push('\n');
        }
    }
    sections
        .into_iter()
        .map(|text| Section { page: None, text })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_start_sections_but_not_inside_code() {
        let sections = extract("intro\n# One\nalpha\n```\n# not a heading\n```\n## Two\nbeta\n");
        let texts: Vec<&str> = sections.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "intro\n",
                "# One\nalpha\n```\n# not a heading\n```\n",
                "## Two\nbeta\n"
            ]
        );
        assert!(looks_like_markdown("# Title\ntext"));
        assert!(!looks_like_markdown("#hashtag and plain words"));
    }
}
