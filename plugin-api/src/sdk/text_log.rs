//! The JSON texts of a conversation's events, back to back in bounded chunks: the in-memory
//! tracker store keeps its conversations this way, and the host its cached event texts.
//!
//! No event costs a heap allocation of its own (P6 in docs/benchmarks.md), and a long
//! conversation grows by adding a chunk, never by copying everything it holds into a buffer
//! twice the size (what one growing buffer does, on the request that crosses each power of
//! two). Within a chunk the texts are comma-separated, so a run of consecutive events is a
//! slice per chunk, ready to go between `[` and `]`.

/// A chunk is not grown beyond this unless a single text is larger.
pub const CHUNK_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextLog {
    chunks: Vec<String>,
    /// Per text: its chunk and its end offset in that chunk.
    ends: Vec<(u32, u32)>,
}

impl TextLog {
    /// The texts of `texts`, the first chunk and the offsets sized for them.
    pub fn of<'a>(texts: impl IntoIterator<Item = &'a str> + Clone) -> TextLog {
        let (count, bytes) = texts
            .clone()
            .into_iter()
            .fold((0, 0), |(n, b), t| (n + 1, b + t.len() + 1));
        let mut log = TextLog {
            chunks: vec![String::with_capacity(
                bytes.saturating_sub(1).min(CHUNK_BYTES),
            )],
            ends: Vec::with_capacity(count),
        };
        for t in texts {
            log.push(t);
        }
        log
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Appends one text.
    pub fn push(&mut self, text: &str) {
        let fits = |c: &String| c.is_empty() || c.len() + 1 + text.len() <= CHUNK_BYTES;
        match self.chunks.last_mut() {
            Some(c) if fits(c) => {
                if !c.is_empty() {
                    c.push(',');
                }
                c.push_str(text);
            }
            // The first chunk grows as needed (most conversations are short); later ones,
            // of a conversation known to be long, are allocated whole.
            None => self.chunks.push(text.to_string()),
            Some(_) => {
                let mut c = String::with_capacity(text.len().max(CHUNK_BYTES));
                c.push_str(text);
                self.chunks.push(c);
            }
        }
        let chunk = self.chunks.len() - 1;
        // A chunk holds at most max(CHUNK_BYTES, one text) bytes, and a text fits in memory.
        let end = u32::try_from(self.chunks[chunk].len()).expect("a chunk is under 4 GiB");
        self.ends.push((chunk as u32, end));
    }

    /// Where text `i` starts in its chunk.
    fn start(&self, i: usize) -> usize {
        match i.checked_sub(1).map(|p| self.ends[p]) {
            Some((chunk, end)) if chunk == self.ends[i].0 => end as usize + 1,
            _ => 0,
        }
    }

    /// Text `i`.
    pub fn get(&self, i: usize) -> &str {
        let (chunk, end) = self.ends[i];
        &self.chunks[chunk as usize][self.start(i)..end as usize]
    }

    /// The texts of `range`, comma-separated: one slice per chunk the range touches, to be
    /// joined with `,` (none for an empty range).
    pub fn slices(&self, range: std::ops::Range<usize>) -> impl Iterator<Item = &str> + '_ {
        let (start, end) = (range.start, range.end);
        // An empty range touches no chunk: first > last.
        let (first, last) = if start < end {
            (self.ends[start].0, self.ends[end - 1].0)
        } else {
            (1, 0)
        };
        (first..=last).map(move |chunk| {
            let c = &self.chunks[chunk as usize];
            let from = if chunk == first { self.start(start) } else { 0 };
            let to = if chunk == last {
                self.ends[end - 1].1 as usize
            } else {
                c.len()
            };
            &c[from..to]
        })
    }

    /// The texts from index `from` on, each as its own string.
    pub fn texts_from(&self, from: usize) -> Vec<String> {
        (from..self.len())
            .map(|i| self.get(i).to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(t: &TextLog, range: std::ops::Range<usize>) -> String {
        t.slices(range).collect::<Vec<_>>().join(",")
    }

    #[test]
    fn texts_are_kept_per_event() {
        let mut t = TextLog::default();
        assert!(t.is_empty());
        t.push(r#"{"event":"restart"}"#);
        t.push("");
        t.push(r#"{"event":"pause"}"#);
        assert_eq!(t.len(), 3);
        assert_eq!(t.get(0), r#"{"event":"restart"}"#);
        assert_eq!(t.get(1), "");
        assert_eq!(t.get(2), r#"{"event":"pause"}"#);
        assert_eq!(
            joined(&t, 0..3),
            r#"{"event":"restart"},,{"event":"pause"}"#
        );
        assert_eq!(joined(&t, 1..3), r#",{"event":"pause"}"#);
        assert_eq!(joined(&t, 2..3), r#"{"event":"pause"}"#);
        assert_eq!(joined(&t, 2..2), "");
        assert_eq!(t.slices(0..0).count(), 0);
    }

    #[test]
    fn chunks_hold_whole_texts_and_join_like_one_buffer() {
        // Texts of varied sizes, some larger than a chunk, across many chunks.
        let texts: Vec<String> = (0..3000)
            .map(|i| {
                let n = match i % 7 {
                    0 => 0,
                    3 => CHUNK_BYTES + 5,
                    _ => (i * 37) % 500,
                };
                format!("{i}:{}", "x".repeat(n))
            })
            .collect();
        let mut t = TextLog::default();
        for s in &texts {
            t.push(s);
        }
        assert!(t.chunks.len() > 10);
        assert!(t
            .chunks
            .iter()
            .all(|c| c.len() <= CHUNK_BYTES || !c.contains(',')));
        assert_eq!(TextLog::of(texts.iter().map(String::as_str)), t);
        for (i, s) in texts.iter().enumerate() {
            assert_eq!(t.get(i), s);
        }
        for range in [0..3000, 0..1, 5..6, 10..700, 1234..2999, 2999..3000, 7..7] {
            assert_eq!(joined(&t, range.clone()), texts[range].join(","));
        }
        assert_eq!(t.texts_from(2990), texts[2990..].to_vec());
    }
}
