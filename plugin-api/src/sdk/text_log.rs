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
    chunks: Vec<Chunk>,
    /// Per text: its end offset in its chunk (4 bytes a text; which chunk holds it is found
    /// from the chunks' first indices, a handful per conversation).
    ends: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq)]
struct Chunk {
    /// The index of the chunk's first text.
    first: u32,
    text: String,
}

impl TextLog {
    /// The texts of `texts`, the first chunk and the offsets sized for them.
    pub fn of<'a>(texts: impl IntoIterator<Item = &'a str> + Clone) -> TextLog {
        let (count, bytes) = texts
            .clone()
            .into_iter()
            .fold((0, 0), |(n, b), t| (n + 1, b + t.len() + 1));
        let mut log = TextLog {
            chunks: vec![Chunk {
                first: 0,
                text: String::with_capacity(bytes.saturating_sub(1).min(CHUNK_BYTES)),
            }],
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
        let index = u32::try_from(self.ends.len()).expect("fewer than 4 billion texts");
        match self.chunks.last_mut() {
            // The first chunk, made by `of` before its first text.
            Some(c) if c.first == index => c.text.push_str(text),
            Some(c) if c.text.len() + 1 + text.len() <= CHUNK_BYTES => {
                c.text.push(',');
                c.text.push_str(text);
            }
            // The first chunk grows as needed (most conversations are short); later ones,
            // of a conversation known to be long, are allocated whole.
            None => self.chunks.push(Chunk {
                first: index,
                text: text.to_string(),
            }),
            Some(_) => {
                let mut c = String::with_capacity(text.len().max(CHUNK_BYTES));
                c.push_str(text);
                self.chunks.push(Chunk {
                    first: index,
                    text: c,
                });
            }
        }
        let chunk = &self.chunks[self.chunks.len() - 1];
        // A chunk holds at most max(CHUNK_BYTES, one text) bytes, and a text fits in memory.
        let end = u32::try_from(chunk.text.len()).expect("a chunk is under 4 GiB");
        self.ends.push(end);
    }

    /// The chunk holding text `i`.
    fn chunk_of(&self, i: usize) -> usize {
        self.chunks
            .partition_point(|c| c.first as usize <= i)
            .saturating_sub(1)
    }

    /// Where text `i` (held by `chunk`) starts in its chunk.
    fn start(&self, chunk: usize, i: usize) -> usize {
        if self.chunks[chunk].first as usize == i {
            0
        } else {
            self.ends[i - 1] as usize + 1
        }
    }

    /// Text `i`.
    pub fn get(&self, i: usize) -> &str {
        let chunk = self.chunk_of(i);
        &self.chunks[chunk].text[self.start(chunk, i)..self.ends[i] as usize]
    }

    /// The texts of `range`, comma-separated: one slice per chunk the range touches, to be
    /// joined with `,` (none for an empty range).
    pub fn slices(&self, range: std::ops::Range<usize>) -> impl Iterator<Item = &str> + '_ {
        let (start, end) = (range.start, range.end);
        // An empty range touches no chunk: first > last.
        let (first, last) = if start < end {
            (self.chunk_of(start), self.chunk_of(end - 1))
        } else {
            (1, 0)
        };
        (first..=last).map(move |chunk| {
            let c = &self.chunks[chunk].text;
            let from = if chunk == first {
                self.start(chunk, start)
            } else {
                0
            };
            let to = if chunk == last {
                self.ends[end - 1] as usize
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
    fn empty_texts_anywhere_are_kept_apart() {
        let texts = ["", "", "x", "", "yz", ""];
        let mut t = TextLog::default();
        for s in texts {
            t.push(s);
        }
        assert_eq!(TextLog::of(texts), t);
        for (i, s) in texts.iter().enumerate() {
            assert_eq!(t.get(i), *s);
        }
        assert_eq!(joined(&t, 0..6), texts.join(","));
        assert_eq!(joined(&t, 1..4), texts[1..4].join(","));
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
            .all(|c| c.text.len() <= CHUNK_BYTES || !c.text.contains(',')));
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
