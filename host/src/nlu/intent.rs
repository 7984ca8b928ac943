//! Intent classifier: sparse word and character n-gram features (tf-idf weighted, L2
//! normalised) into a multinomial logistic regression (softmax, L2 penalty), trained by
//! full-batch Adam. Full-batch training needs no random order, so the result depends on the
//! data alone. Confidences are the softmax probabilities.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::tokens::Token;

/// Training hyper-parameters (chosen by 5-fold cross-validation on the shared examples; see
/// `docs/nlu-quality.md`).
#[derive(Debug, Clone, Copy)]
pub struct IntentParams {
    pub epochs: usize,
    pub learning_rate: f32,
    pub l2: f32,
    /// Weight of the character n-gram features relative to the word features.
    pub char_weight: f32,
    /// Whether every intent counts the same in the loss, however many examples it has.
    pub balanced: bool,
}

impl Default for IntentParams {
    fn default() -> Self {
        IntentParams {
            epochs: 250,
            learning_rate: 0.05,
            l2: 1e-5,
            char_weight: 1.0,
            balanced: true,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IntentClassifier {
    /// Intent names, sorted; the classes.
    pub labels: Vec<String>,
    /// Feature names; the index is the feature id.
    features: Vec<String>,
    idf: Vec<f32>,
    /// `weights[feature * labels.len() + label]`.
    weights: Vec<f32>,
    bias: Vec<f32>,
    #[serde(skip)]
    index: OnceLock<super::FeatureIndex>,
}

/// The feature names of a message: word unigrams and bigrams, character 2–5-grams inside
/// word boundaries, and the regex/lookup patterns found in it.
pub fn feature_names(tokens: &[Token], pattern_features: &[Vec<String>]) -> Vec<String> {
    let mut set = BTreeSet::new();
    for_each_feature(tokens, pattern_features, |f| {
        if !set.contains(f) {
            set.insert(f.to_string());
        }
    });
    set.into_iter().collect()
}

/// Calls `each` with every feature name of a message, in no particular order and possibly
/// repeated (`feature_names` sorts and dedups them). The names are written into one reused
/// buffer, so finding the known ones costs no allocation per feature.
fn for_each_feature(
    tokens: &[Token],
    pattern_features: &[Vec<String>],
    mut each: impl FnMut(&str),
) {
    fn emit(buf: &mut String, each: &mut impl FnMut(&str), parts: &[&str]) {
        buf.clear();
        for part in parts {
            buf.push_str(part);
        }
        each(buf);
    }
    let mut buf = String::with_capacity(64);
    if tokens.is_empty() {
        emit(&mut buf, &mut each, &["<empty>"]);
    }
    // Room for a word of most languages without growing.
    let mut padded: Vec<char> = Vec::with_capacity(32);
    for (i, t) in tokens.iter().enumerate() {
        emit(&mut buf, &mut each, &["w:", &t.lower]);
        let prev = if i == 0 {
            "<s>"
        } else {
            tokens[i - 1].lower.as_str()
        };
        emit(&mut buf, &mut each, &["b:", prev, " ", &t.lower]);
        padded.clear();
        padded.push(' ');
        padded.extend(t.lower.chars());
        padded.push(' ');
        // Very long "words" (URLs, garbage) contribute a bounded number of n-grams.
        let limit = padded.len().min(40);
        for n in 2..=5 {
            for s in 0..limit.saturating_sub(n - 1) {
                buf.clear();
                buf.push_str("c:");
                buf.extend(&padded[s..s + n]);
                each(&buf);
            }
        }
    }
    if let Some(last) = tokens.last() {
        emit(&mut buf, &mut each, &["b:", &last.lower, " </s>"]);
    }
    for f in pattern_features
        .iter()
        .flatten()
        .filter(|f| !f.contains('#'))
    {
        emit(&mut buf, &mut each, &["p:", f]);
    }
}

fn softmax(logits: &mut [f64]) {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for l in logits.iter_mut() {
        *l = (*l - max).exp();
        sum += *l;
    }
    for l in logits.iter_mut() {
        *l /= sum;
    }
}

impl IntentClassifier {
    fn index(&self) -> &super::FeatureIndex {
        self.index.get_or_init(|| {
            self.features
                .iter()
                .enumerate()
                .map(|(i, f)| (f.as_str(), i as u32))
                .collect()
        })
    }

    /// tf-idf (binary tf) vector, L2-normalised; unknown features are ignored.
    fn vectorize(&self, names: &[String]) -> Vec<(u32, f32)> {
        let index = self.index();
        let ids: Vec<u32> = names.iter().filter_map(|n| index.get(n).copied()).collect();
        self.vectorize_ids(ids)
    }

    /// [`Self::vectorize`] of known feature ids in ascending order. Ids were assigned in
    /// sorted name order, so this sums in the same order as over sorted names: the same bits.
    fn vectorize_ids(&self, ids: Vec<u32>) -> Vec<(u32, f32)> {
        let mut v: Vec<(u32, f32)> = ids.into_iter().map(|i| (i, self.idf[i as usize])).collect();
        let norm = v.iter().map(|(_, x)| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|(_, x)| *x /= norm);
        }
        v
    }

    fn logits(&self, x: &[(u32, f32)]) -> Vec<f64> {
        let k = self.labels.len();
        let mut z: Vec<f64> = self.bias.iter().map(|&b| b as f64).collect();
        for &(f, val) in x {
            let row = &self.weights[f as usize * k..(f as usize + 1) * k];
            for (zj, w) in z.iter_mut().zip(row) {
                *zj += (w * val) as f64;
            }
        }
        z
    }

    /// Whether the (possibly loaded) parts fit together; a corrupt model predicts nothing.
    pub fn is_consistent(&self) -> bool {
        let (f, k) = (self.features.len(), self.labels.len());
        self.idf.len() == f && self.weights.len() == f * k && self.bias.len() == k
    }

    /// Probabilities per label (same order as `labels`).
    pub fn predict(&self, feature_names: &[String]) -> Vec<f64> {
        if self.labels.is_empty() {
            return Vec::new();
        }
        let mut z = self.logits(&self.vectorize(feature_names));
        softmax(&mut z);
        z
    }

    /// [`Self::predict`] of a message's features, looked up as they are generated instead of
    /// collected as names first (the serving path; `predict` is what training evaluates).
    pub fn predict_message(&self, tokens: &[Token], pattern_features: &[Vec<String>]) -> Vec<f64> {
        if self.labels.is_empty() {
            return Vec::new();
        }
        let index = self.index();
        let mut ids = Vec::with_capacity(32);
        for_each_feature(tokens, pattern_features, |f| {
            if let Some(&i) = index.get(f) {
                ids.push(i);
            }
        });
        ids.sort_unstable();
        ids.dedup();
        let mut z = self.logits(&self.vectorize_ids(ids));
        softmax(&mut z);
        z
    }

    /// Trains on (feature names, intent) pairs.
    pub fn train(examples: &[(Vec<String>, String)], params: IntentParams) -> IntentClassifier {
        let labels: Vec<String> = examples
            .iter()
            .map(|(_, l)| l.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut df: BTreeMap<&str, u32> = BTreeMap::new();
        for (names, _) in examples {
            for n in names {
                *df.entry(n.as_str()).or_default() += 1;
            }
        }
        let n_docs = examples.len() as f32;
        let features: Vec<String> = df.keys().map(|s| s.to_string()).collect();
        let idf: Vec<f32> = df
            .iter()
            .map(|(name, &d)| {
                let w = if name.starts_with("c:") {
                    params.char_weight
                } else {
                    1.0
                };
                w * (((1.0 + n_docs) / (1.0 + d as f32)).ln() + 1.0)
            })
            .collect();
        let k = labels.len();
        let mut model = IntentClassifier {
            labels,
            features,
            idf,
            weights: Vec::new(),
            bias: vec![0.0; k],
            index: OnceLock::new(),
        };
        model.weights = vec![0.0; model.features.len() * k];
        if k < 2 {
            return model;
        }
        let label_of: HashMap<&str, usize> = model
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_str(), i))
            .collect();
        let xs: Vec<Vec<(u32, f32)>> = examples.iter().map(|(n, _)| model.vectorize(n)).collect();
        let ys: Vec<usize> = examples.iter().map(|(_, l)| label_of[l.as_str()]).collect();
        // Balanced class weights: every intent counts the same in the loss, however many
        // examples it has.
        let mut counts = vec![0usize; k];
        ys.iter().for_each(|&y| counts[y] += 1);
        let cw: Vec<f64> = counts
            .iter()
            .map(|&c| {
                if !params.balanced {
                    1.0
                } else if c == 0 {
                    0.0
                } else {
                    examples.len() as f64 / (k * c) as f64
                }
            })
            .collect();
        let total_w: f64 = ys.iter().map(|&y| cw[y]).sum();

        let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        let mut gw = vec![0.0f32; model.weights.len()];
        let mut gb = vec![0.0f32; k];
        let (mut mw, mut vw) = (vec![0.0f32; gw.len()], vec![0.0f32; gw.len()]);
        let (mut mb, mut vb) = (vec![0.0f32; k], vec![0.0f32; k]);
        for t in 1..=params.epochs {
            gw.iter_mut().for_each(|g| *g = 0.0);
            gb.iter_mut().for_each(|g| *g = 0.0);
            for (x, &y) in xs.iter().zip(&ys) {
                let mut p = model.logits(x);
                softmax(&mut p);
                p[y] -= 1.0;
                let scale = cw[y] / total_w;
                for (j, pj) in p.iter().enumerate() {
                    let g = (pj * scale) as f32;
                    gb[j] += g;
                    for &(f, val) in x {
                        gw[f as usize * k + j] += g * val;
                    }
                }
            }
            let lr = params.learning_rate;
            let (c1, c2) = (1.0 - b1.powi(t as i32), 1.0 - b2.powi(t as i32));
            for i in 0..gw.len() {
                let g = gw[i] + params.l2 * model.weights[i];
                mw[i] = b1 * mw[i] + (1.0 - b1) * g;
                vw[i] = b2 * vw[i] + (1.0 - b2) * g * g;
                model.weights[i] -= lr * (mw[i] / c1) / ((vw[i] / c2).sqrt() + eps);
            }
            for j in 0..k {
                let g = gb[j];
                mb[j] = b1 * mb[j] + (1.0 - b1) * g;
                vb[j] = b2 * vb[j] + (1.0 - b2) * g * g;
                model.bias[j] -= lr * (mb[j] / c1) / ((vb[j] / c2).sqrt() + eps);
            }
        }
        model
    }
}
