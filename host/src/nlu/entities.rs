//! Entity tagger: a linear-chain model over tokens with BILOU tags (Begin, Inside, Last,
//! Unit, Outside), trained as an averaged structured perceptron and decoded with Viterbi
//! under the BILOU constraints. Token features: the lowercased word, prefixes and suffixes,
//! the word's shape, its neighbours, and the regex/lookup patterns covering it and its
//! neighbours. An entity with a role or a group is its own label (`city` as `from` and `city`
//! as `to` are two labels), so roles and groups come out of the same tagger.
//!
//! `confidence_entity` is the smallest marginal probability (forward-backward over the same
//! scores) of the predicted tags of the entity's tokens.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::tokens::Token;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EntityLabel {
    pub entity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// A predicted entity: token range `[first, last]`, label index and confidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub first: usize,
    pub last: usize,
    pub label: usize,
    pub confidence: f64,
}

/// Tag ids: 0 = O, `1 + 4 * label + {0: B, 1: I, 2: L, 3: U}`.
const O: usize = 0;
const B: usize = 0;
const I: usize = 1;
const L: usize = 2;
const U: usize = 3;

fn tag(label: usize, kind: usize) -> usize {
    1 + 4 * label + kind
}

fn kind(t: usize) -> Option<(usize, usize)> {
    (t != O).then(|| ((t - 1) / 4, (t - 1) % 4))
}

/// Whether tag `cur` may follow `prev` (`None` = start of the message).
fn allowed(prev: Option<usize>, cur: usize) -> bool {
    let open = prev.and_then(kind).filter(|(_, k)| *k == B || *k == I);
    match (open, kind(cur)) {
        (Some((pl, _)), Some((cl, ck))) => pl == cl && (ck == I || ck == L),
        (Some(_), None) => false,
        (None, Some((_, ck))) => ck == B || ck == U,
        (None, None) => true,
    }
}

fn may_end(t: usize) -> bool {
    kind(t).is_none_or(|(_, k)| k == L || k == U)
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EntityTagger {
    pub labels: Vec<EntityLabel>,
    features: Vec<String>,
    /// `weights[feature * n_tags + tag]`
    #[serde(with = "sparse")]
    weights: Vec<f32>,
    /// `transitions[(prev + 1) * n_tags + cur]`, row 0 = start of message.
    transitions: Vec<f32>,
    #[serde(skip)]
    index: OnceLock<super::FeatureIndex>,
}

/// One training sentence: the tokens' feature names and the gold tags.
pub struct TaggedSentence {
    pub features: Vec<Vec<String>>,
    pub tags: Vec<usize>,
}

fn shape(word: &str) -> String {
    let mut s = String::new();
    for c in word.chars() {
        let k = if c.is_uppercase() {
            'X'
        } else if c.is_lowercase() {
            'x'
        } else if c.is_numeric() {
            'd'
        } else if c.is_alphabetic() {
            'a'
        } else {
            c
        };
        // Runs are collapsed: "Oslo" → "Xx", "12:30" → "d:d".
        if !s.ends_with(k) {
            s.push(k);
        }
        if s.len() > 8 {
            break;
        }
    }
    s
}

/// The first `n` characters of `s`.
fn prefix(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

/// The last `n` characters of `s`.
fn suffix(s: &str, n: usize) -> &str {
    match n.checked_sub(1).and_then(|k| s.char_indices().rev().nth(k)) {
        Some((start, _)) => &s[start..],
        None if n == 0 => "",
        None => s,
    }
}

/// The features of every token of a message.
pub fn token_features(tokens: &[Token], patterns: &[Vec<String>]) -> Vec<Vec<String>> {
    (0..tokens.len())
        .map(|i| {
            let mut f = Vec::with_capacity(18);
            for_each_token_feature(tokens, patterns, i, |name| f.push(name.to_string()));
            f
        })
        .collect()
}

/// Calls `each` with the features of token `i`, in [`token_features`]' order (which the
/// emission sums follow), written into one reused buffer instead of one string each.
fn for_each_token_feature(
    tokens: &[Token],
    patterns: &[Vec<String>],
    i: usize,
    mut each: impl FnMut(&str),
) {
    const LENGTHS: [&str; 9] = ["0", "1", "2", "3", "4", "5", "6", "7", "8"];
    let word = |i: isize| -> &str {
        if i < 0 {
            "<s>"
        } else {
            tokens.get(i as usize).map_or("</s>", |t| t.lower.as_str())
        }
    };
    // Every name is written into one reused buffer from its parts: no allocation and no
    // formatting machinery per feature (this runs for every token of every message).
    let mut buf = String::with_capacity(64);
    let mut emit = |parts: &[&str]| {
        buf.clear();
        for part in parts {
            buf.push_str(part);
        }
        each(&buf);
    };
    let t = &tokens[i];
    let w = t.lower.as_str();
    let ii = i as isize;
    let (before, after) = (word(ii - 1), word(ii + 1));
    emit(&["bias"]);
    emit(&["w:", w]);
    emit(&["p2:", prefix(w, 2)]);
    emit(&["p3:", prefix(w, 3)]);
    emit(&["s2:", suffix(w, 2)]);
    emit(&["s3:", suffix(w, 3)]);
    emit(&["shape:", &shape(&t.text)]);
    emit(&["len:", LENGTHS[w.chars().count().min(8)]]);
    emit(&["w-1:", before]);
    emit(&["w+1:", after]);
    emit(&["w-2:", word(ii - 2)]);
    emit(&["w+2:", word(ii + 2)]);
    emit(&["w-1w:", before, " ", w]);
    emit(&["ww+1:", w, " ", after]);
    emit(&["s3-1:", suffix(before, 3)]);
    emit(&["s3+1:", suffix(after, 3)]);
    if i == 0 {
        emit(&["bos"]);
    }
    if i + 1 == tokens.len() {
        emit(&["eos"]);
    }
    for p in &patterns[i] {
        emit(&["pat:", p]);
    }
    if i > 0 {
        for p in &patterns[i - 1] {
            emit(&["pat-1:", p]);
        }
    }
    if let Some(next) = patterns.get(i + 1) {
        for p in next {
            emit(&["pat+1:", p]);
        }
    }
}

/// Gold BILOU tags for tokens, from labelled byte spans `(start, end, label)`. Tokens that
/// overlap a span belong to it; a span that covers no token is skipped, and a span that
/// overlaps an earlier one is skipped.
pub fn gold_tags(tokens: &[Token], spans: &[(usize, usize, usize)]) -> Vec<usize> {
    let mut tags = vec![O; tokens.len()];
    for &(start, end, label) in spans {
        let covered: Vec<usize> = (0..tokens.len())
            .filter(|&i| tokens[i].start < end && tokens[i].end > start)
            .collect();
        if covered.is_empty() || covered.iter().any(|&i| tags[i] != O) {
            continue;
        }
        let (first, last) = (covered[0], covered[covered.len() - 1]);
        if first == last {
            tags[first] = tag(label, U);
        } else {
            tags[first] = tag(label, B);
            (first + 1..last).for_each(|i| tags[i] = tag(label, I));
            tags[last] = tag(label, L);
        }
    }
    tags
}

/// The entity spans of a tag sequence.
pub fn spans(tags: &[usize]) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let mut open: Option<(usize, usize)> = None;
    for (i, &t) in tags.iter().enumerate() {
        match kind(t) {
            Some((l, k)) if k == U => {
                out.push((i, i, l));
                open = None;
            }
            Some((l, k)) if k == B => open = Some((i, l)),
            Some((l, k)) if k == L => {
                if let Some((s, ol)) = open.take() {
                    if ol == l {
                        out.push((s, i, l));
                    }
                }
            }
            Some(_) => {}
            None => open = None,
        }
    }
    out
}

impl EntityTagger {
    pub fn n_tags(&self) -> usize {
        1 + 4 * self.labels.len()
    }

    /// Whether the (possibly loaded) parts fit together; a corrupt model predicts nothing.
    pub fn is_consistent(&self) -> bool {
        let nt = self.n_tags();
        self.weights.len() == self.features.len() * nt && self.transitions.len() == (nt + 1) * nt
    }

    fn index(&self) -> &super::FeatureIndex {
        self.index.get_or_init(|| {
            self.features
                .iter()
                .enumerate()
                .map(|(i, f)| (f.as_str(), i as u32))
                .collect()
        })
    }

    fn ids(&self, features: &[Vec<String>]) -> Vec<Vec<u32>> {
        let index = self.index();
        features
            .iter()
            .map(|fs| fs.iter().filter_map(|f| index.get(f).copied()).collect())
            .collect()
    }

    /// Emission scores `[token][tag]`.
    fn emissions(&self, ids: &[Vec<u32>], weights: &[f32]) -> Vec<Vec<f32>> {
        let nt = self.n_tags();
        ids.iter()
            .map(|fs| {
                let mut e = vec![0.0f32; nt];
                for &f in fs {
                    let row = &weights[f as usize * nt..(f as usize + 1) * nt];
                    e.iter_mut().zip(row).for_each(|(a, b)| *a += b);
                }
                e
            })
            .collect()
    }

    fn trans(&self, transitions: &[f32], prev: Option<usize>, cur: usize) -> f32 {
        transitions[prev.map_or(0, |p| p + 1) * self.n_tags() + cur]
    }

    // Dynamic programming over (token, tag) tables reads best with indices.
    #[allow(clippy::needless_range_loop)]
    fn viterbi(&self, em: &[Vec<f32>], transitions: &[f32]) -> Vec<usize> {
        let (n, nt) = (em.len(), self.n_tags());
        if n == 0 {
            return Vec::new();
        }
        let neg = f32::NEG_INFINITY;
        let mut score = vec![vec![neg; nt]; n];
        let mut back = vec![vec![0usize; nt]; n];
        for t in 0..nt {
            if allowed(None, t) {
                score[0][t] = em[0][t] + self.trans(transitions, None, t);
            }
        }
        for i in 1..n {
            for t in 0..nt {
                let mut best = (neg, 0);
                for p in 0..nt {
                    if score[i - 1][p] == neg || !allowed(Some(p), t) {
                        continue;
                    }
                    let s = score[i - 1][p] + self.trans(transitions, Some(p), t);
                    if s > best.0 {
                        best = (s, p);
                    }
                }
                if best.0 > neg {
                    score[i][t] = best.0 + em[i][t];
                    back[i][t] = best.1;
                }
            }
        }
        let mut last = O;
        let mut best = neg;
        for t in 0..nt {
            if may_end(t) && score[n - 1][t] > best {
                best = score[n - 1][t];
                last = t;
            }
        }
        let mut path = vec![last; n];
        for i in (1..n).rev() {
            path[i - 1] = back[i][path[i]];
        }
        path
    }

    /// Marginal probability of every (token, tag), by forward-backward over the scores.
    #[allow(clippy::needless_range_loop)]
    fn marginals(&self, em: &[Vec<f32>]) -> Vec<Vec<f64>> {
        let (n, nt) = (em.len(), self.n_tags());
        let lse = |v: &[f64]| {
            let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if m == f64::NEG_INFINITY {
                m
            } else {
                m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
            }
        };
        let tr = |p: Option<usize>, c: usize| {
            if allowed(p, c) {
                self.trans(&self.transitions, p, c) as f64
            } else {
                f64::NEG_INFINITY
            }
        };
        let mut alpha = vec![vec![f64::NEG_INFINITY; nt]; n];
        for t in 0..nt {
            alpha[0][t] = tr(None, t) + em[0][t] as f64;
        }
        for i in 1..n {
            for t in 0..nt {
                let v: Vec<f64> = (0..nt).map(|p| alpha[i - 1][p] + tr(Some(p), t)).collect();
                alpha[i][t] = lse(&v) + em[i][t] as f64;
            }
        }
        let mut beta = vec![vec![f64::NEG_INFINITY; nt]; n];
        for t in 0..nt {
            beta[n - 1][t] = if may_end(t) { 0.0 } else { f64::NEG_INFINITY };
        }
        for i in (0..n - 1).rev() {
            for p in 0..nt {
                let v: Vec<f64> = (0..nt)
                    .map(|t| tr(Some(p), t) + em[i + 1][t] as f64 + beta[i + 1][t])
                    .collect();
                beta[i][p] = lse(&v);
            }
        }
        let z = lse(&alpha[n - 1]
            .iter()
            .zip(&beta[n - 1])
            .map(|(a, b)| a + b)
            .collect::<Vec<_>>());
        (0..n)
            .map(|i| {
                (0..nt)
                    .map(|t| (alpha[i][t] + beta[i][t] - z).exp())
                    .collect()
            })
            .collect()
    }

    /// The entities of a message, from its token features.
    pub fn predict(&self, features: &[Vec<String>]) -> Vec<Span> {
        if features.is_empty() || self.labels.is_empty() {
            return Vec::new();
        }
        self.predict_ids(&self.ids(features))
    }

    /// [`Self::predict`] of a message's tokens, their features looked up as they are
    /// generated (the serving path; the same ids in the same order, so the same result).
    pub fn predict_tokens(&self, tokens: &[Token], patterns: &[Vec<String>]) -> Vec<Span> {
        if tokens.is_empty() || self.labels.is_empty() {
            return Vec::new();
        }
        let index = self.index();
        let ids: Vec<Vec<u32>> = (0..tokens.len())
            .map(|i| {
                let mut ids = Vec::with_capacity(18);
                for_each_token_feature(tokens, patterns, i, |f| {
                    if let Some(&id) = index.get(f) {
                        ids.push(id);
                    }
                });
                ids
            })
            .collect();
        self.predict_ids(&ids)
    }

    fn predict_ids(&self, ids: &[Vec<u32>]) -> Vec<Span> {
        let em = self.emissions(ids, &self.weights);
        let path = self.viterbi(&em, &self.transitions);
        let found = spans(&path);
        if found.is_empty() {
            return Vec::new();
        }
        let marg = self.marginals(&em);
        found
            .into_iter()
            .map(|(first, last, label)| {
                let confidence = (first..=last)
                    .map(|i| marg[i][path[i]])
                    .fold(1.0f64, f64::min);
                let confidence = if confidence.is_finite() {
                    confidence.clamp(0.0, 1.0)
                } else {
                    0.0
                };
                Span {
                    first,
                    last,
                    label,
                    confidence,
                }
            })
            .collect()
    }

    pub fn train(
        labels: Vec<EntityLabel>,
        sentences: &[TaggedSentence],
        epochs: usize,
        seed: u64,
    ) -> EntityTagger {
        let features: Vec<String> = sentences
            .iter()
            .flat_map(|s| s.features.iter().flatten().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut m = EntityTagger {
            labels,
            features,
            weights: Vec::new(),
            transitions: Vec::new(),
            index: OnceLock::new(),
        };
        let nt = m.n_tags();
        let nf = m.features.len();
        let (mut w, mut wu) = (vec![0.0f32; nf * nt], vec![0.0f32; nf * nt]);
        let (mut tr, mut tu) = (vec![0.0f32; (nt + 1) * nt], vec![0.0f32; (nt + 1) * nt]);
        let ids: Vec<Vec<Vec<u32>>> = sentences.iter().map(|s| m.ids(&s.features)).collect();
        let mut order: Vec<usize> = (0..sentences.len()).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        // `c` counts updates steps; the average is w - wu / c (the usual lazy averaging).
        let mut c = 1.0f32;
        for _ in 0..epochs {
            order.shuffle(&mut rng);
            for &si in &order {
                let gold = &sentences[si].tags;
                if gold.is_empty() {
                    continue;
                }
                let em = m.emissions(&ids[si], &w);
                let pred = m.viterbi(&em, &tr);
                if pred != *gold {
                    for (i, (&g, &p)) in gold.iter().zip(&pred).enumerate() {
                        if g != p {
                            for &f in &ids[si][i] {
                                let (gi, pi) = (f as usize * nt + g, f as usize * nt + p);
                                w[gi] += 1.0;
                                wu[gi] += c;
                                w[pi] -= 1.0;
                                wu[pi] -= c;
                            }
                        }
                        let gp = if i == 0 { 0 } else { gold[i - 1] + 1 };
                        let pp = if i == 0 { 0 } else { pred[i - 1] + 1 };
                        if gp != pp || g != p {
                            tr[gp * nt + g] += 1.0;
                            tu[gp * nt + g] += c;
                            tr[pp * nt + p] -= 1.0;
                            tu[pp * nt + p] -= c;
                        }
                    }
                }
                c += 1.0;
            }
        }
        m.weights = w.iter().zip(&wu).map(|(w, u)| w - u / c).collect();
        m.transitions = tr.iter().zip(&tu).map(|(w, u)| w - u / c).collect();
        m
    }
}

/// Serialises a mostly-zero weight vector as its length and its non-zero entries.
mod sparse {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Upper bound on a loaded weight vector (a corrupt archive must not allocate without bound).
    const MAX_LEN: usize = 1 << 27;

    #[derive(Serialize, Deserialize)]
    struct Sparse {
        len: usize,
        nonzero: Vec<(u32, f32)>,
    }

    pub fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        let nonzero = v
            .iter()
            .enumerate()
            .filter(|(_, x)| **x != 0.0)
            .map(|(i, x)| (i as u32, *x))
            .collect();
        Sparse {
            len: v.len(),
            nonzero,
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        let s = Sparse::deserialize(d)?;
        if s.len > MAX_LEN {
            return Err(serde::de::Error::custom(format!(
                "weight vector of {} entries is too large",
                s.len
            )));
        }
        let mut v = vec![0.0; s.len];
        for (i, x) in s.nonzero {
            if let Some(slot) = v.get_mut(i as usize) {
                *slot = x;
            }
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::{prefix, suffix};

    /// The slicing helpers give what collecting the characters gave (feature names, so
    /// the trained weights, depend on them).
    #[test]
    fn prefixes_and_suffixes_count_characters() {
        for s in ["", "a", "ab", "café", "☕ok", "naïve", "日本語テキスト"] {
            let chars: Vec<char> = s.chars().collect();
            for n in 0..6 {
                let p: String = chars.iter().take(n).collect();
                let q: String = chars[chars.len().saturating_sub(n)..].iter().collect();
                assert_eq!(prefix(s, n), p, "{s} {n}");
                assert_eq!(suffix(s, n), q, "{s} {n}");
            }
        }
    }
}
