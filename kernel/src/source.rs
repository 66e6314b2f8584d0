//! Named source texts and the locations errors point at.

use std::fmt;

use miette::{NamedSource, SourceSpan};

/// A text the deployment is built from, with the name errors should cite (usually its path).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Source {
    /// The file name or other label shown in errors.
    pub name: String,
    /// The full text.
    pub text: String,
}

impl Source {
    /// A source named `name` holding `text`.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
        }
    }

    /// The location of byte `offset` (clamped to the text), carrying the text for rendering.
    pub fn locate(&self, offset: usize, len: usize) -> Located {
        let offset = offset.min(self.text.len());
        let (line, column) = line_column(&self.text, offset);
        Located {
            file: self.name.clone(),
            line,
            column,
            snippet: Some(Box::new((
                NamedSource::new(self.name.clone(), self.text.clone()),
                SourceSpan::new(offset.into(), len.min(self.text.len() - offset)),
            ))),
        }
    }

    /// A location naming a 1-based line and column, as reported by serde_json or toml.
    pub fn at_line(&self, line: usize, column: usize) -> Located {
        let offset = offset_of(&self.text, line, column);
        let mut at = self.locate(offset, 0);
        at.line = line.max(1);
        at.column = column.max(1);
        at
    }

    /// A location naming the file alone, for problems without a position (a missing field...).
    pub fn whole(&self) -> Located {
        Located::file(self.name.clone())
    }
}

/// Where a problem is: file, 1-based line and column, and (when known) the text to underline.
#[derive(Debug, Clone)]
pub struct Located {
    /// The source's name.
    pub file: String,
    /// 1-based line; 0 when the problem concerns the whole file.
    pub line: usize,
    /// 1-based column; 0 when unknown.
    pub column: usize,
    pub(crate) snippet: Option<Box<(NamedSource<String>, SourceSpan)>>,
}

impl Located {
    /// A location naming only a file (or another label such as `<tool registry>`).
    pub fn file(file: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line: 0,
            column: 0,
            snippet: None,
        }
    }
}

impl Located {
    /// The text around the location, for a [`miette::Diagnostic`]'s `source_code`.
    pub fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.snippet
            .as_ref()
            .map(|b| &b.0 as &dyn miette::SourceCode)
    }

    /// The span to underline, for a [`miette::Diagnostic`]'s `labels`.
    pub fn label(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let span = self.snippet.as_ref()?.1;
        let label = miette::LabeledSpan::new_with_span(Some("here".into()), span);
        Some(Box::new(std::iter::once(label)))
    }
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (0, _) => write!(f, "{}", self.file),
            (l, 0) => write!(f, "{}:{l}", self.file),
            (l, c) => write!(f, "{}:{l}:{c}", self.file),
        }
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let col_bytes: usize = l
                .chars()
                .take(column.saturating_sub(1))
                .map(char::len_utf8)
                .sum();
            return offset + col_bytes;
        }
        offset += l.len();
    }
    text.len()
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_lines_and_columns_and_back() {
        let src = Source::new("a.cedar", "one\ntwo\nthrée x\n");
        let at = src.locate(14, 1);
        assert_eq!((at.line, at.column), (3, 6));
        assert_eq!(at.to_string(), "a.cedar:3:6");
        let back = src.at_line(3, 6);
        assert_eq!(back.snippet.map(|b| b.1.offset()), Some(14));
        assert_eq!(src.whole().to_string(), "a.cedar");
    }
}
