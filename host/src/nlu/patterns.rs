//! Regex features and lookup tables from the NLU data (`- regex:` / `- lookup:`): which tokens
//! of a message they cover. Both feed the intent classifier (one feature per pattern found in
//! the message) and the entity tagger (one feature per covered token).
//!
//! Regexes are case-sensitive, as in Rasa's `RegexFeaturizer`; lookup elements match whole
//! token sequences, case-insensitively. The compiled form is rebuilt lazily after loading.

use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use super::tokens::Token;
use crate::training::nlu::NluData;

/// Longest lookup element, in tokens, that is matched.
const MAX_LOOKUP_TOKENS: usize = 8;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Patterns {
    /// (name, pattern)
    regexes: Vec<(String, String)>,
    /// name → elements
    lookups: BTreeMap<String, Vec<String>>,
    #[serde(skip)]
    compiled: OnceLock<Compiled>,
}

#[derive(Debug, Clone)]
struct Compiled {
    regexes: Vec<(String, Regex)>,
    /// (name, lowercased element tokens joined by a space, element length in tokens)
    lookups: Vec<(String, HashSet<String>)>,
    max_len: usize,
}

impl Patterns {
    pub fn from_data(data: &NluData) -> Patterns {
        let mut lookups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for l in &data.lookups {
            lookups
                .entry(l.name.clone())
                .or_default()
                .extend(l.elements.iter().cloned());
        }
        Patterns {
            regexes: data
                .regexes
                .iter()
                .map(|r| (r.name.clone(), r.pattern.clone()))
                .collect(),
            lookups,
            compiled: OnceLock::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.regexes.is_empty() && self.lookups.is_empty()
    }

    fn compiled(&self) -> &Compiled {
        self.compiled.get_or_init(|| {
            let regexes = self
                .regexes
                .iter()
                .filter_map(
                    |(n, p)| match RegexBuilder::new(p).size_limit(1 << 20).build() {
                        Ok(r) => Some((n.clone(), r)),
                        Err(e) => {
                            tracing::warn!(
                                "regex feature `{n}`: invalid pattern `{p}` ({e}): ignored"
                            );
                            None
                        }
                    },
                )
                .collect();
            let mut max_len = 0;
            let lookups = self
                .lookups
                .iter()
                .map(|(n, els)| {
                    let set: HashSet<String> = els
                        .iter()
                        .filter_map(|e| {
                            let toks: Vec<String> = super::tokens::tokenize(e)
                                .into_iter()
                                .map(|t| t.lower)
                                .collect();
                            (!toks.is_empty() && toks.len() <= MAX_LOOKUP_TOKENS).then(|| {
                                max_len = max_len.max(toks.len());
                                toks.join(" ")
                            })
                        })
                        .collect();
                    (n.clone(), set)
                })
                .collect();
            Compiled {
                regexes,
                lookups,
                max_len,
            }
        })
    }

    /// For every token, the pattern features that cover it: `re:<name>` / `lk:<name>`, and the
    /// same with the token's place in the match (`#B`, `#I`, `#L`, `#U`), which lets the
    /// tagger take a whole multi-word match as one entity.
    pub fn token_features(&self, text: &str, tokens: &[Token]) -> Vec<Vec<String>> {
        let mut out = vec![Vec::new(); tokens.len()];
        if self.is_empty() || tokens.is_empty() {
            return out;
        }
        let c = self.compiled();
        // Only the tokenised part of the text (tokenisation is capped) is searched.
        let text = &text[..tokens[tokens.len() - 1].end];
        for (name, re) in &c.regexes {
            for m in re.find_iter(text) {
                let covered: Vec<usize> = (0..tokens.len())
                    .filter(|&i| tokens[i].start < m.end() && tokens[i].end > m.start())
                    .collect();
                if let (Some(&first), Some(&last)) = (covered.first(), covered.last()) {
                    mark(&mut out, &format!("re:{name}"), first, last);
                }
            }
        }
        for (name, set) in &c.lookups {
            for s in 0..tokens.len() {
                let mut key = String::new();
                for len in 1..=c.max_len.min(tokens.len() - s) {
                    if len > 1 {
                        key.push(' ');
                    }
                    key.push_str(&tokens[s + len - 1].lower);
                    if set.contains(&key) {
                        mark(&mut out, &format!("lk:{name}"), s, s + len - 1);
                    }
                }
            }
        }
        out
    }
}

/// Marks tokens `first..=last` as covered by feature `f` (with their BILOU place).
fn mark(out: &mut [Vec<String>], f: &str, first: usize, last: usize) {
    for (i, o) in out.iter_mut().enumerate().take(last + 1).skip(first) {
        let place = match (i == first, i == last) {
            (true, true) => "U",
            (true, false) => "B",
            (false, true) => "L",
            (false, false) => "I",
        };
        for name in [f.to_string(), format!("{f}#{place}")] {
            if !o.contains(&name) {
                o.push(name);
            }
        }
    }
}
