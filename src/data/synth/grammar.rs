//! Sentences for the synthetic videos: a small built-in weather-forecast grammar, or the real
//! gloss sequences and German sentences of a Phoenix-2014T annotation file restricted to its
//! most frequent glosses.

use std::collections::HashMap;

use rand::Rng;

use crate::data::annotation::SignRecord;

/// Categories of the built-in glosses (template slots).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cat {
    /// Time: HEUTE, MORGEN, …
    Time,
    /// Region: NORD, SUED, …
    Region,
    /// Weather noun: REGEN, SONNE, …
    Weather,
    /// Temperature adjective: WARM, KALT, …
    Temp,
    /// Intensity: VIEL, WENIG, …
    Amount,
    /// Number: ZWANZIG, …
    Number,
    /// A fixed word used literally by templates (UND, DANN, GRAD, AUCH).
    Word,
}

/// Built-in glosses in the order the vocabulary takes them (categories interleaved so that
/// small vocabularies still fill the templates), with their category and German phrase.
const BUILTIN: [(&str, Cat, &str); 40] = [
    ("REGEN", Cat::Weather, "regen"),
    ("NORD", Cat::Region, "im norden"),
    ("MORGEN", Cat::Time, "morgen"),
    ("SONNE", Cat::Weather, "sonnenschein"),
    ("SUED", Cat::Region, "im süden"),
    ("HEUTE", Cat::Time, "heute"),
    ("WOLKE", Cat::Weather, "wolken"),
    ("WARM", Cat::Temp, "warm"),
    ("KALT", Cat::Temp, "kalt"),
    ("UND", Cat::Word, "und"),
    ("VIEL", Cat::Amount, "viel"),
    ("GRAD", Cat::Word, "grad"),
    ("ZWANZIG", Cat::Number, "zwanzig"),
    ("SCHNEE", Cat::Weather, "schnee"),
    ("WEST", Cat::Region, "im westen"),
    ("NACHT", Cat::Time, "in der nacht"),
    ("OST", Cat::Region, "im osten"),
    ("GEWITTER", Cat::Weather, "gewitter"),
    ("DANN", Cat::Word, "dann"),
    ("WENIG", Cat::Amount, "wenig"),
    ("ABEND", Cat::Time, "am abend"),
    ("WIND", Cat::Weather, "wind"),
    ("ZEHN", Cat::Number, "zehn"),
    ("AUCH", Cat::Word, "auch"),
    ("NEBEL", Cat::Weather, "nebel"),
    ("BERG", Cat::Region, "in den bergen"),
    ("MILD", Cat::Temp, "mild"),
    ("STARK", Cat::Amount, "kräftiger"),
    ("WOCHENENDE", Cat::Time, "am wochenende"),
    ("SCHAUER", Cat::Weather, "schauer"),
    ("KUESTE", Cat::Region, "an der küste"),
    ("FUENF", Cat::Number, "fünf"),
    ("FROST", Cat::Temp, "frostig"),
    ("BISSCHEN", Cat::Amount, "ein bisschen"),
    ("SONNTAG", Cat::Time, "am sonntag"),
    ("MITTE", Cat::Region, "in der mitte"),
    ("DREISSIG", Cat::Number, "dreißig"),
    ("HEISS", Cat::Temp, "heiß"),
    ("MONTAG", Cat::Time, "am montag"),
    ("GLATT", Cat::Temp, "glatt"),
];

/// Number of built-in glosses (the largest vocabulary without a source file).
pub const BUILTIN_GLOSSES: usize = BUILTIN.len();

/// Templates: slots (`T R W K A N`) or literal glosses, and the sentence with `{i}` standing
/// for the phrase of the `i`-th gloss. Lengths 2–8.
const TEMPLATES: [(&str, &str); 14] = [
    ("T W", "{0} {1}"),
    ("R W", "{1} {0}"),
    ("T W R", "{0} gibt es {1} {2}"),
    ("T R K", "{0} wird es {1} {2}"),
    ("R A W", "{0} gibt es {1} {2}"),
    ("T R W A", "{0} {1} {3} {2}"),
    ("K N GRAD R", "{3} wird es {0} bei {1} {2}"),
    ("T R W DANN W", "{0} {1} zunächst {2} dann {4}"),
    ("T W R UND W R", "{0} gibt es {1} {2} und {4} {5}"),
    ("T R A W UND K", "{0} gibt es {1} {2} {3} und es bleibt {5}"),
    ("T R W AUCH R W", "{0} gibt es {2} {1} und auch {4} {5}"),
    ("R N GRAD UND R N GRAD", "{0} {1} grad und {4} {5} grad"),
    ("T R W UND K N GRAD", "{0} {1} {2} und {3} bei {4} {5} grad"),
    (
        "T R A W DANN W AUCH R",
        "{0} {1} {2} {3} danach {5} auch {7}",
    ),
];

/// A sentence to sign: glosses (as written in the annotation), their vocabulary ids, the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentence {
    /// Glosses, upper-case as stored in the annotation's `gloss` field.
    pub glosses: Vec<String>,
    /// Vocabulary ids (`gloss2ids.pkl`) of the glosses.
    pub ids: Vec<i64>,
    /// Lower-case sentence ending in `" ."`.
    pub text: String,
}

/// Number of special tokens before the glosses in the vocabulary (`<si> <unk> <pad> </s>`).
pub const SPECIALS: [&str; 4] = ["<si>", "<unk>", "<pad>", "</s>"];

fn id_of(position: usize) -> i64 {
    (position + SPECIALS.len()) as i64
}

/// The built-in grammar restricted to its first `n` glosses.
#[derive(Debug, Clone)]
pub struct BuiltinGrammar {
    n: usize,
    /// Templates whose slots and literal glosses the vocabulary covers.
    usable: Vec<usize>,
}

impl BuiltinGrammar {
    /// Uses the first `n` built-in glosses (`n ≤ BUILTIN_GLOSSES`).
    pub fn new(n: usize) -> Self {
        let n = n.min(BUILTIN.len());
        let usable = (0..TEMPLATES.len())
            .filter(|&t| {
                TEMPLATES[t].0.split(' ').all(|tok| match slot_cat(tok) {
                    Some(cat) => BUILTIN[..n].iter().any(|g| g.1 == cat),
                    None => BUILTIN[..n].iter().any(|g| g.0 == tok),
                })
            })
            .collect();
        Self { n, usable }
    }

    /// The glosses of the vocabulary, in id order.
    pub fn vocabulary(&self) -> Vec<String> {
        BUILTIN[..self.n].iter().map(|g| g.0.to_string()).collect()
    }

    /// Draws a sentence: a usable template with random slot fillers, or (when the vocabulary
    /// is too small for any template) a random gloss sequence of length 2–8.
    pub fn sample<R: Rng>(&self, rng: &mut R) -> Sentence {
        let picked: Vec<usize> = if self.usable.is_empty() {
            let len = rng.random_range(2..=8);
            (0..len)
                .map(|_| rng.random_range(0..self.n.max(1)))
                .collect()
        } else {
            let (pattern, _) = TEMPLATES[self.usable[rng.random_range(0..self.usable.len())]];
            pattern
                .split(' ')
                .map(|tok| {
                    let candidates: Vec<usize> = (0..self.n)
                        .filter(|&i| match slot_cat(tok) {
                            Some(cat) => BUILTIN[i].1 == cat,
                            None => BUILTIN[i].0 == tok,
                        })
                        .collect();
                    candidates[rng.random_range(0..candidates.len())]
                })
                .collect()
        };
        let phrases: Vec<&str> = picked.iter().map(|&i| BUILTIN[i].2).collect();
        let text = match self.template_of(&picked) {
            Some(t) => fill(TEMPLATES[t].1, &phrases),
            None => phrases.join(" "),
        };
        Sentence {
            glosses: picked.iter().map(|&i| BUILTIN[i].0.to_string()).collect(),
            ids: picked.iter().map(|&i| id_of(i)).collect(),
            text: format!("{text} ."),
        }
    }

    /// The sentence of an isolated sign: gloss `k` (vocabulary position) alone, its phrase as
    /// the text.
    pub fn single(&self, k: usize) -> Sentence {
        let k = k % self.n.max(1);
        Sentence {
            glosses: vec![BUILTIN[k].0.to_string()],
            ids: vec![id_of(k)],
            text: format!("{} .", BUILTIN[k].2),
        }
    }

    /// The usable template that produced `picked` (first match).
    fn template_of(&self, picked: &[usize]) -> Option<usize> {
        self.usable.iter().copied().find(|&t| {
            let toks: Vec<&str> = TEMPLATES[t].0.split(' ').collect();
            toks.len() == picked.len()
                && toks
                    .iter()
                    .zip(picked)
                    .all(|(tok, &i)| match slot_cat(tok) {
                        Some(cat) => BUILTIN[i].1 == cat,
                        None => BUILTIN[i].0 == *tok,
                    })
        })
    }
}

fn slot_cat(tok: &str) -> Option<Cat> {
    Some(match tok {
        "T" => Cat::Time,
        "R" => Cat::Region,
        "W" => Cat::Weather,
        "K" => Cat::Temp,
        "A" => Cat::Amount,
        "N" => Cat::Number,
        _ => return None,
    })
}

fn fill(pattern: &str, phrases: &[&str]) -> String {
    let mut out = pattern.to_string();
    for (i, p) in phrases.iter().enumerate() {
        out = out.replace(&format!("{{{i}}}"), p);
    }
    out
}

/// How records of a real annotation file are restricted to the top-N glosses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourcePolicy {
    /// Keep only records whose glosses all lie in the top N (and that have at most
    /// `max_glosses` glosses); gloss sequence and sentence stay a true pair. Few records survive
    /// for small N (Phoenix train: 67 for N = 20, 397 for N = 50), so sentences repeat.
    #[default]
    KeepInVocab,
    /// Drop the out-of-vocabulary glosses from every record, keep records with at least one
    /// gloss left, truncated to `max_glosses`; the German sentence is kept unchanged and so no
    /// longer matches the glosses exactly.
    DropOutOfVocab,
}

/// Sentences and vocabulary taken from a real annotation file.
#[derive(Debug, Clone)]
pub struct SourceSentences {
    /// The top-N glosses by frequency (ties by first occurrence), as written in the file.
    pub vocabulary: Vec<String>,
    /// The surviving sentences, in file order.
    pub sentences: Vec<Sentence>,
}

/// The sentence of an isolated sign for a vocabulary without phrases (taken from a source
/// file): gloss `k` (position in `vocabulary`) alone, the lower-cased gloss as the text.
pub fn single_gloss(vocabulary: &[String], k: usize) -> Sentence {
    let k = k % vocabulary.len().max(1);
    let gloss = vocabulary.get(k).cloned().unwrap_or_default();
    Sentence {
        text: format!("{} .", gloss.to_lowercase()),
        glosses: vec![gloss],
        ids: vec![id_of(k)],
    }
}

/// Restricts `records` to their `n` most frequent glosses (compared lower-case, like the
/// gloss tokenizer does) following `policy`.
pub fn from_records(
    records: &[SignRecord],
    n: usize,
    policy: SourcePolicy,
    max_glosses: usize,
) -> SourceSentences {
    // Count lower-cased tokens, remembering the first spelling and first position.
    let mut counts: HashMap<String, (usize, usize, String)> = HashMap::new();
    for r in records {
        for g in r.gloss.split_whitespace() {
            let next = counts.len();
            let e = counts
                .entry(g.to_lowercase())
                .or_insert((0, next, g.to_string()));
            e.0 += 1;
        }
    }
    let mut ranked: Vec<(String, (usize, usize, String))> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.1 .1.cmp(&b.1 .1)));
    ranked.truncate(n);
    let ids: HashMap<&str, i64> = ranked
        .iter()
        .enumerate()
        .map(|(i, (key, _))| (key.as_str(), id_of(i)))
        .collect();
    let mut sentences = Vec::new();
    for r in records {
        let toks: Vec<&str> = r.gloss.split_whitespace().collect();
        let known: Vec<(String, i64)> = toks
            .iter()
            .filter_map(|g| {
                ids.get(g.to_lowercase().as_str())
                    .map(|&id| (g.to_string(), id))
            })
            .collect();
        let keep = match policy {
            SourcePolicy::KeepInVocab => {
                !known.is_empty() && known.len() == toks.len() && known.len() <= max_glosses
            }
            SourcePolicy::DropOutOfVocab => !known.is_empty(),
        };
        if !keep {
            continue;
        }
        let known = &known[..known.len().min(max_glosses)];
        let text = r.text.trim().to_lowercase();
        let text = if text.ends_with(" .") {
            text
        } else {
            format!("{} .", text.trim_end_matches('.').trim_end())
        };
        sentences.push(Sentence {
            glosses: known.iter().map(|(g, _)| g.to_uppercase()).collect(),
            ids: known.iter().map(|&(_, id)| id).collect(),
            text,
        });
    }
    SourceSentences {
        vocabulary: ranked
            .into_iter()
            .map(|(_, (_, _, g))| g.to_uppercase())
            .collect(),
        sentences,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn builtin_sentences_are_well_formed_and_cover_the_vocabulary() {
        for n in [2usize, 5, 20, BUILTIN_GLOSSES] {
            let g = BuiltinGrammar::new(n);
            let vocab = g.vocabulary();
            assert_eq!(vocab.len(), n);
            let mut seen = vec![false; n];
            let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
            for _ in 0..2000 {
                let s = g.sample(&mut rng);
                assert!((2..=8).contains(&s.glosses.len()), "{s:?}");
                assert!(s.text.ends_with(" .") && !s.text.contains("{"), "{s:?}");
                assert_eq!(s.text, s.text.to_lowercase());
                for (gl, &id) in s.glosses.iter().zip(&s.ids) {
                    let pos = (id - 4) as usize;
                    assert_eq!(&vocab[pos], gl);
                    seen[pos] = true;
                }
            }
            assert!(seen.iter().all(|&s| s), "n={n}: unused glosses {seen:?}");
        }
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let s = BuiltinGrammar::new(3).sample(&mut rng);
        assert!(["MORGEN REGEN", "NORD REGEN", "MORGEN REGEN NORD"]
            .contains(&s.glosses.join(" ").as_str()));
    }

    fn rec(gloss: &str, text: &str) -> SignRecord {
        SignRecord {
            name: "train/x".into(),
            signer: "Signer01".into(),
            gloss: gloss.into(),
            text: text.into(),
            num_frames: 10,
        }
    }

    #[test]
    fn source_top_n_and_policies() {
        let records = vec![
            rec("REGEN NORD", "regen im norden ."),
            rec("REGEN SUED SONNE", "im süden sonne ."),
            rec("REGEN NORD SUED", "überall regen ."),
            rec("NEBEL", "nebel ."),
        ];
        let keep = from_records(&records, 3, SourcePolicy::KeepInVocab, 8);
        assert_eq!(keep.vocabulary, vec!["REGEN", "NORD", "SUED"]);
        assert_eq!(keep.sentences.len(), 2);
        assert_eq!(keep.sentences[1].ids, vec![4, 5, 6]);
        assert_eq!(keep.sentences[1].text, "überall regen .");
        let drop = from_records(&records, 3, SourcePolicy::DropOutOfVocab, 2);
        assert_eq!(drop.sentences.len(), 3);
        assert_eq!(drop.sentences[1].glosses, vec!["REGEN", "SUED"]);
        assert_eq!(drop.sentences[2].ids, vec![4, 5]);
    }
}
