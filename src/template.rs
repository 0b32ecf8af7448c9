//! `{column}` templates: how a job turns a row's cells and `--var` values into link fields.
//!
//! A template is parsed once, and each placeholder is checked to name an input column or a run variable before
//! any row is read, so a typo in a job file is an error before the first request, never a blank title.

use std::fmt;

/// A parsed template: literal text and placeholders, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Placeholder(String),
}

/// A template that could not be parsed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    /// `{` with no matching `}`.
    #[error("unclosed `{{` at character {0} (write `{{{{` for a literal brace)")]
    Unclosed(usize),
    /// `}` with no opening `{`.
    #[error("unmatched `}}` at character {0} (write `}}}}` for a literal brace)")]
    Unmatched(usize),
    /// `{}`.
    #[error("empty placeholder `{{}}` at character {0}")]
    Empty(usize),
}

impl Template {
    /// Parses `{name}` placeholders; `{{` and `}}` stand for literal braces.
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = source.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().is_some_and(|&(_, n)| n == '{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek().is_some_and(|&(_, n)| n == '}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '}')) => break,
                            Some((_, ch)) => name.push(ch),
                            None => return Err(TemplateError::Unclosed(at + 1)),
                        }
                    }
                    let name = name.trim().to_owned();
                    if name.is_empty() {
                        return Err(TemplateError::Empty(at + 1));
                    }
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Placeholder(name));
                }
                '}' => return Err(TemplateError::Unmatched(at + 1)),
                _ => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template { source: source.to_owned(), parts })
    }

    /// The placeholder names, in order of appearance.
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Placeholder(name) => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    /// Whether the template is plain text with no placeholder.
    pub fn is_literal(&self) -> bool {
        self.placeholders().next().is_none()
    }

    /// Renders with `lookup`; the first placeholder it has no value for is returned as the error.
    pub fn render<'v>(&self, lookup: impl FnMut(&str) -> Option<&'v str>) -> Result<String, String> {
        let mut out = String::new();
        self.render_into(lookup, &mut out)?;
        Ok(out)
    }

    /// [`Template::render`] into `out` (cleared first), reusing its room.
    pub fn render_into<'v>(
        &self,
        mut lookup: impl FnMut(&str) -> Option<&'v str>,
        out: &mut String,
    ) -> Result<(), String> {
        out.clear();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Placeholder(name) => out.push_str(lookup(name).ok_or_else(|| name.clone())?),
            }
        }
        Ok(())
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_placeholders_and_escaped_braces() {
        let t = Template::parse("{plan} - {month} {{literal}}").unwrap();
        assert_eq!(t.placeholders().collect::<Vec<_>>(), ["plan", "month"]);
        let out = t.render(|name| match name {
            "plan" => Some("Gold"),
            "month" => Some("2026-11"),
            _ => None,
        });
        assert_eq!(out.unwrap(), "Gold - 2026-11 {literal}");
    }

    #[test]
    fn reports_the_missing_placeholder() {
        let t = Template::parse("{a}{b}").unwrap();
        assert_eq!(t.render(|n| (n == "a").then_some("x")), Err("b".to_owned()));
    }

    #[test]
    fn refuses_malformed_braces() {
        assert_eq!(Template::parse("ab{c"), Err(TemplateError::Unclosed(3)));
        assert_eq!(Template::parse("a}"), Err(TemplateError::Unmatched(2)));
        assert_eq!(Template::parse("{}"), Err(TemplateError::Empty(1)));
    }
}
