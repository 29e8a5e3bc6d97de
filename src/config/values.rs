//! Config values whose YAML form is not a plain struct or a fixed-spelling enum: the per-module
//! learning-rate map, `pad_length` (`pad_to_max` or a number), the feed-forward kernel size
//! (one number or a list of two) and the case-insensitive optimizer/scheduler names.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

/// Top-level modules of the task model, named like the reference's `SignLanguageModel` children.
/// One optimizer parameter group is built per module (spec §5).
pub const MODEL_MODULE_NAMES: [&str; 3] =
    ["recognition_network", "translation_network", "vl_mapper"];

/// `training.optimization.learning_rate`: a `default` rate plus rates for modules whose name
/// contains a given substring (`translation: 1.0e-5` applies to `translation_network`).
///
/// The reference picks the *last* matching key in file order; validation rejects configs where
/// one of [`MODEL_MODULE_NAMES`] is matched by more than one key, so file order never matters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "BTreeMap<String, f64>", into = "BTreeMap<String, f64>")]
pub struct LearningRates {
    /// Rate of modules that no other key matches.
    pub default: f64,
    /// Module-name substring → rate (without `default`).
    pub by_module: BTreeMap<String, f64>,
}

impl LearningRates {
    /// A single rate for every module.
    pub fn uniform(rate: f64) -> Self {
        LearningRates {
            default: rate,
            by_module: BTreeMap::new(),
        }
    }

    /// Keys of [`LearningRates::by_module`] that occur in `module_name`.
    pub fn matching_keys<'a>(&'a self, module_name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.by_module
            .keys()
            .map(String::as_str)
            .filter(move |key| module_name.contains(key))
    }

    /// The learning rate of the module (parameter group) `module_name`: the rate of the key that
    /// occurs in the name, else `default`. If several keys match (validation rejects that for
    /// [`MODEL_MODULE_NAMES`]), the longest key wins.
    pub fn for_module(&self, module_name: &str) -> f64 {
        let mut best: Option<(&str, f64)> = None;
        for key in self.matching_keys(module_name) {
            if best.is_none_or(|(best_key, _)| key.len() > best_key.len()) {
                best = Some((key, self.by_module[key]));
            }
        }
        best.map_or(self.default, |(_, rate)| rate)
    }
}

impl TryFrom<BTreeMap<String, f64>> for LearningRates {
    type Error = String;

    fn try_from(mut rates: BTreeMap<String, f64>) -> Result<Self, Self::Error> {
        let default = rates.remove("default").ok_or_else(|| {
            "missing key `default` (the rate of modules no other key matches)".to_string()
        })?;
        Ok(LearningRates {
            default,
            by_module: rates,
        })
    }
}

impl From<LearningRates> for BTreeMap<String, f64> {
    fn from(rates: LearningRates) -> Self {
        let mut map = rates.by_module;
        map.insert("default".to_string(), rates.default);
        map
    }
}

/// `data.pad_length`: the temporal length videos of a batch are padded to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PadLength {
    /// `pad_to_max`: the longest video of the batch (reference default).
    #[default]
    PadToMax,
    /// A fixed number of frames.
    Frames(usize),
}

impl Serialize for PadLength {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            PadLength::PadToMax => serializer.serialize_str("pad_to_max"),
            PadLength::Frames(frames) => serializer.serialize_u64(*frames as u64),
        }
    }
}

impl<'de> Deserialize<'de> for PadLength {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PadLengthVisitor;
        impl Visitor<'_> for PadLengthVisitor {
            type Value = PadLength;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`pad_to_max` or a number of frames")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<PadLength, E> {
                if text == "pad_to_max" {
                    return Ok(PadLength::PadToMax);
                }
                // The reference applies int() to any other value, so "64" is accepted.
                text.parse()
                    .map(PadLength::Frames)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(text), &self))
            }
            fn visit_u64<E: de::Error>(self, frames: u64) -> Result<PadLength, E> {
                usize::try_from(frames)
                    .map(PadLength::Frames)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(frames), &self))
            }
            fn visit_i64<E: de::Error>(self, frames: i64) -> Result<PadLength, E> {
                usize::try_from(frames)
                    .map(PadLength::Frames)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(frames), &self))
            }
        }
        deserializer.deserialize_any(PadLengthVisitor)
    }
}

/// `visual_head.ff_kernelsize`: kernel sizes of the two temporal convolutions of the
/// feed-forward block. YAML accepts one number (both convolutions) or a list of two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FfKernelSizes(pub [usize; 2]);

impl Default for FfKernelSizes {
    fn default() -> Self {
        FfKernelSizes([3, 3])
    }
}

impl Serialize for FfKernelSizes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(2))?;
        for size in self.0 {
            seq.serialize_element(&size)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for FfKernelSizes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KernelVisitor;
        impl<'de> Visitor<'de> for KernelVisitor {
            type Value = FfKernelSizes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a kernel size or a list of two kernel sizes")
            }
            fn visit_u64<E: de::Error>(self, size: u64) -> Result<FfKernelSizes, E> {
                let size = usize::try_from(size)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(size), &self))?;
                Ok(FfKernelSizes([size, size]))
            }
            fn visit_i64<E: de::Error>(self, size: i64) -> Result<FfKernelSizes, E> {
                let size = usize::try_from(size)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(size), &self))?;
                Ok(FfKernelSizes([size, size]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FfKernelSizes, A::Error> {
                let mut sizes = Vec::with_capacity(2);
                while let Some(size) = seq.next_element::<usize>()? {
                    sizes.push(size);
                }
                match sizes[..] {
                    [first, second] => Ok(FfKernelSizes([first, second])),
                    _ => Err(de::Error::invalid_length(sizes.len(), &self)),
                }
            }
        }
        deserializer.deserialize_any(KernelVisitor)
    }
}

/// `training.optimization.optimizer` (matched case-insensitively, like the reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum OptimizerKind {
    /// `adam`: Adam with coupled L2 weight decay (`torch.optim.Adam`).
    #[default]
    Adam,
    /// `adamw`: the reference maps this to the *same* `torch.optim.Adam` (coupled L2, not
    /// decoupled AdamW; spec §5). Kept distinct so the effective config round-trips; the trainer
    /// must treat it exactly like [`OptimizerKind::Adam`].
    AdamW,
}

impl OptimizerKind {
    /// The spelling written back to YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            OptimizerKind::Adam => "Adam",
            OptimizerKind::AdamW => "adamw",
        }
    }
}

impl TryFrom<String> for OptimizerKind {
    type Error = String;
    fn try_from(name: String) -> Result<Self, Self::Error> {
        match name.to_lowercase().as_str() {
            "adam" => Ok(OptimizerKind::Adam),
            "adamw" => Ok(OptimizerKind::AdamW),
            _ => Err(format!(
                "unknown optimizer `{name}`, expected `adam` or `adamw` (case-insensitive)"
            )),
        }
    }
}

impl From<OptimizerKind> for String {
    fn from(kind: OptimizerKind) -> String {
        kind.as_str().to_string()
    }
}

/// `training.optimization.scheduler` (matched case-insensitively, like the reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SchedulerKind {
    /// `cosineannealing`: `CosineAnnealingLR(T_max = t_max, eta_min)`, stepped once at the start
    /// of every epoch (spec §5).
    CosineAnnealing,
}

impl TryFrom<String> for SchedulerKind {
    type Error = String;
    fn try_from(name: String) -> Result<Self, Self::Error> {
        match name.to_lowercase().as_str() {
            "cosineannealing" => Ok(SchedulerKind::CosineAnnealing),
            _ => Err(format!(
                "unknown scheduler `{name}`, expected `cosineannealing` (case-insensitive)"
            )),
        }
    }
}

impl From<SchedulerKind> for String {
    fn from(kind: SchedulerKind) -> String {
        match kind {
            SchedulerKind::CosineAnnealing => "cosineannealing".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn learning_rates_pick_matching_module() {
        let rates: LearningRates =
            serde_json::from_value(json!({"default": 1e-3, "translation": 1e-5, "mapper": 2e-3}))
                .unwrap();
        assert_eq!(rates.for_module("recognition_network"), 1e-3);
        assert_eq!(rates.for_module("translation_network"), 1e-5);
        assert_eq!(rates.for_module("vl_mapper"), 2e-3);
    }

    #[test]
    fn learning_rates_longest_key_wins() {
        let rates: LearningRates =
            serde_json::from_value(json!({"default": 1.0, "net": 2.0, "translation_net": 3.0}))
                .unwrap();
        assert_eq!(rates.for_module("translation_network"), 3.0);
        assert_eq!(rates.for_module("recognition_network"), 2.0);
    }

    #[test]
    fn learning_rates_need_default() {
        let error = serde_json::from_value::<LearningRates>(json!({"translation": 1e-5}))
            .unwrap_err()
            .to_string();
        assert!(error.contains("missing key `default`"), "{error}");
    }

    #[test]
    fn learning_rates_round_trip() {
        let rates: LearningRates =
            serde_json::from_value(json!({"default": 1e-4, "translation": 1e-5})).unwrap();
        let value = serde_json::to_value(&rates).unwrap();
        assert_eq!(value, json!({"default": 1e-4, "translation": 1e-5}));
    }

    #[test]
    fn pad_length_forms() {
        assert_eq!(
            serde_json::from_value::<PadLength>(json!("pad_to_max")).unwrap(),
            PadLength::PadToMax
        );
        assert_eq!(
            serde_json::from_value::<PadLength>(json!(64)).unwrap(),
            PadLength::Frames(64)
        );
        assert_eq!(
            serde_json::from_value::<PadLength>(json!("64")).unwrap(),
            PadLength::Frames(64)
        );
        assert!(serde_json::from_value::<PadLength>(json!("longest")).is_err());
        assert!(serde_json::from_value::<PadLength>(json!(-1)).is_err());
        assert_eq!(
            serde_json::to_value(PadLength::Frames(8)).unwrap(),
            json!(8)
        );
    }

    #[test]
    fn kernel_sizes_accept_number_or_pair() {
        assert_eq!(
            serde_json::from_value::<FfKernelSizes>(json!(5)).unwrap(),
            FfKernelSizes([5, 5])
        );
        assert_eq!(
            serde_json::from_value::<FfKernelSizes>(json!([3, 1])).unwrap(),
            FfKernelSizes([3, 1])
        );
        let error = serde_json::from_value::<FfKernelSizes>(json!([3, 3, 3]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("invalid length 3"), "{error}");
    }

    #[test]
    fn optimizer_and_scheduler_names_are_case_insensitive() {
        assert_eq!(
            serde_json::from_value::<OptimizerKind>(json!("ADAM")).unwrap(),
            OptimizerKind::Adam
        );
        assert_eq!(
            serde_json::from_value::<OptimizerKind>(json!("adamw")).unwrap(),
            OptimizerKind::AdamW
        );
        let error = serde_json::from_value::<OptimizerKind>(json!("sgd"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown optimizer `sgd`"), "{error}");
        assert_eq!(
            serde_json::from_value::<SchedulerKind>(json!("CosineAnnealing")).unwrap(),
            SchedulerKind::CosineAnnealing
        );
        assert!(serde_json::from_value::<SchedulerKind>(json!("noam")).is_err());
    }
}
