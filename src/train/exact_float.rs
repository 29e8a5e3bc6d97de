//! `f64` values in saved JSON state that read back bit for bit.
//!
//! `serde_json` (without its `float_roundtrip` feature) parses long decimals with a fast
//! algorithm that can be off by one ulp: a learning rate `0.0009045084971874737` comes back as
//! `…736`, and a resumed cosine schedule would drift from the uninterrupted one. These helpers
//! write numbers as strings with the shortest round-trip digits (`"0.0009045084971874737"`,
//! `"1e-8"`, `"NaN"`) and parse them with Rust's correctly rounded parser. Plain JSON numbers are
//! accepted on input too (hand-written files).
//!
//! Use with `#[serde(with = "crate::train::exact_float::scalar")]` (or `vec`, `option`, `pair`).

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// An `f64` that serialises as an exact decimal string.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExactF64(pub f64);

impl Serialize for ExactF64 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let value = self.0;
        let magnitude = value.abs();
        // Rust's `{}` and `{:e}` both print the shortest digits that parse back exactly.
        let text = if value == 0.0 || !value.is_finite() || (1e-5..1e16).contains(&magnitude) {
            format!("{value}")
        } else {
            format!("{value:e}")
        };
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for ExactF64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ExactVisitor;
        impl Visitor<'_> for ExactVisitor {
            type Value = ExactF64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a string holding a number")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<ExactF64, E> {
                text.trim()
                    .parse()
                    .map(ExactF64)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(text), &self))
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<ExactF64, E> {
                Ok(ExactF64(value))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<ExactF64, E> {
                Ok(ExactF64(value as f64))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<ExactF64, E> {
                Ok(ExactF64(value as f64))
            }
        }
        deserializer.deserialize_any(ExactVisitor)
    }
}

/// `#[serde(with)]` for `f64`.
pub mod scalar {
    use super::*;

    /// Serialises exactly.
    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        ExactF64(*value).serialize(serializer)
    }

    /// Parses exactly.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        Ok(ExactF64::deserialize(deserializer)?.0)
    }
}

/// `#[serde(with)]` for `Vec<f64>`.
pub mod vec {
    use super::*;

    /// Serialises exactly.
    pub fn serialize<S: Serializer>(values: &[f64], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(values.iter().map(|v| ExactF64(*v)))
    }

    /// Parses exactly.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<f64>, D::Error> {
        let values = Vec::<ExactF64>::deserialize(deserializer)?;
        Ok(values.into_iter().map(|v| v.0).collect())
    }
}

/// `#[serde(with)]` for `Option<f64>`.
pub mod option {
    use super::*;

    /// Serialises exactly (`null` for `None`).
    pub fn serialize<S: Serializer>(value: &Option<f64>, serializer: S) -> Result<S::Ok, S::Error> {
        value.map(ExactF64).serialize(serializer)
    }

    /// Parses exactly.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<f64>, D::Error> {
        Ok(Option::<ExactF64>::deserialize(deserializer)?.map(|v| v.0))
    }
}

/// `#[serde(with)]` for `[f64; 2]`.
pub mod pair {
    use super::*;

    /// Serialises exactly.
    pub fn serialize<S: Serializer>(values: &[f64; 2], serializer: S) -> Result<S::Ok, S::Error> {
        [ExactF64(values[0]), ExactF64(values[1])].serialize(serializer)
    }

    /// Parses exactly.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[f64; 2], D::Error> {
        let [a, b] = <[ExactF64; 2]>::deserialize(deserializer)?;
        Ok([a.0, b.0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        #[serde(with = "scalar")]
        x: f64,
        #[serde(with = "vec")]
        v: Vec<f64>,
        #[serde(with = "option")]
        o: Option<f64>,
        #[serde(with = "pair")]
        p: [f64; 2],
    }

    #[test]
    fn values_survive_json_bit_for_bit() {
        let tricky = [
            0.0009045084971874737,
            9.045084971874738e-6,
            1e-8,
            -0.0,
            1e300,
            f64::MIN_POSITIVE,
            5e-324,
            0.1 + 0.2,
            123456.789,
        ];
        for x in tricky {
            let sample = Sample {
                x,
                v: vec![x, -x],
                o: Some(x),
                p: [x, 1.0 - x],
            };
            let json = serde_json::to_string(&sample).expect("json");
            let back: Sample = serde_json::from_str(&json).expect("parse");
            assert_eq!(back.x.to_bits(), x.to_bits(), "{json}");
            assert_eq!(back, sample, "{json}");
        }
        let nan: Sample = serde_json::from_str(
            r#"{"x": "NaN", "v": [1, 2.5], "o": null, "p": ["inf", "-1e-3"]}"#,
        )
        .expect("parse");
        assert!(nan.x.is_nan() && nan.o.is_none());
        assert_eq!(nan.v, [1.0, 2.5]);
        assert_eq!(nan.p, [f64::INFINITY, -1e-3]);
        assert!(
            serde_json::from_str::<Sample>(r#"{"x": "abc", "v": [], "o": null, "p": [1, 2]}"#)
                .is_err()
        );
    }
}
