//! Tokenisation shared by the intent classifier and the entity tagger.
//!
//! A token is a run of alphanumeric characters, with `'`, `-`, `.`, `:`, `/`, `@` and `_`
//! kept inside it when they join two alphanumerics (`i'd`, `5.30`, `e-mail`, `a@b.com`), and
//! `,` when it joins two digits (`1,000`). Other characters separate tokens and are dropped, like Rasa's
//! `WhitespaceTokenizer`. Spans are byte offsets into the original text.

/// One token: byte span in the text and the lowercased form.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub start: usize,
    pub end: usize,
    pub text: String,
    pub lower: String,
}

/// Upper bound on tokens per message: longer messages are cut (no unbounded work per message).
pub const MAX_TOKENS: usize = 512;

fn joiner(c: char) -> bool {
    matches!(c, '\'' | '’' | '-' | '.' | ':' | '/' | '@' | '_')
}

pub fn tokenize(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    // Streaming with one character of look-ahead: no copy of the text, and the work stops
    // at MAX_TOKENS however long the text is.
    let mut it = text.char_indices().peekable();
    let mut start: Option<usize> = None;
    let mut prev = ' ';
    while let Some((i, c)) = it.next() {
        let next = it.peek().map(|n| n.1);
        let inside = start.is_some()
            && ((joiner(c) && next.is_some_and(char::is_alphanumeric))
                || (c == ',' && prev.is_ascii_digit() && next.is_some_and(|n| n.is_ascii_digit())));
        if c.is_alphanumeric() || inside {
            start.get_or_insert(i);
        } else if let Some(s) = start.take() {
            push(&mut out, text, s, i);
            if out.len() >= MAX_TOKENS {
                return out;
            }
        }
        prev = c;
    }
    if let Some(s) = start {
        push(&mut out, text, s, text.len());
    }
    out
}

fn push(out: &mut Vec<Token>, text: &str, start: usize, end: usize) {
    let t = &text[start..end];
    out.push(Token {
        start,
        end,
        text: t.to_string(),
        lower: t.to_lowercase(),
    });
}

/// Byte offsets → character offsets, for offsets in ascending order (one pass over the text).
pub fn char_offsets(text: &str, bytes: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(bytes.len());
    let (mut b, mut c) = (0usize, 0usize);
    let mut chars = text.chars();
    for &target in bytes {
        let target = target.min(text.len());
        while b < target {
            match chars.next() {
                Some(ch) => {
                    b += ch.len_utf8();
                    c += 1;
                }
                None => break,
            }
        }
        out.push(c);
    }
    out
}
