//! Exact numbers from Upbit payloads. Quotation endpoints send prices as JSON numbers (`80050000.0`, `1.2e11`)
//! and exchange endpoints as strings (`"0.001"`); both are read from their text into `Decimal`, never through
//! `f64`, so a price is exactly what the exchange wrote.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// Parses the text of a JSON number or of a decimal string: plain (`80050000.0`) or scientific (`1.2e11`).
pub fn parse_decimal(text: &str) -> Option<Decimal> {
    let t = text.trim();
    let t = t.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(t).trim();
    if t.is_empty() {
        return None;
    }
    if t.contains(['e', 'E']) { Decimal::from_scientific(t).ok() } else { Decimal::from_str(t).ok() }
}

/// Serde adapter for a required number or number-string field: reads the raw JSON text of the value.
pub fn decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    let raw = <&RawValue>::deserialize(d)?;
    parse_decimal(raw.get()).ok_or_else(|| D::Error::custom(format!("not a decimal number: {}", raw.get())))
}

/// Serde adapter for an optional (absent or `null`) number or number-string field.
pub fn opt_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    let raw = Option::<&RawValue>::deserialize(d)?;
    match raw {
        None => Ok(None),
        Some(r) if r.get().trim() == "null" => Ok(None),
        Some(r) => {
            parse_decimal(r.get()).map(Some).ok_or_else(|| D::Error::custom(format!("not a decimal: {}", r.get())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[derive(Deserialize)]
    struct P {
        #[serde(deserialize_with = "decimal")]
        v: Decimal,
        #[serde(default, deserialize_with = "opt_decimal")]
        o: Option<Decimal>,
    }

    fn v(json: &str) -> Result<P, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn numbers_keep_their_exact_text() {
        assert_eq!(v(r#"{"v":80050000.0}"#).unwrap().v, dec!(80050000.0));
        assert_eq!(v(r#"{"v":0.1}"#).unwrap().v.to_string(), "0.1");
        assert_eq!(v(r#"{"v":1.2e11}"#).unwrap().v, dec!(120000000000));
        assert_eq!(v(r#"{"v":"0.00012345"}"#).unwrap().v, dec!(0.00012345));
        // A value f64 cannot hold exactly stays exact.
        assert_eq!(v(r#"{"v":12345678901234.56789}"#).unwrap().v.to_string(), "12345678901234.56789");
        assert_eq!(v(r#"{"v":1,"o":null}"#).unwrap().o, None);
        assert_eq!(v(r#"{"v":1,"o":"2.5"}"#).unwrap().o, Some(dec!(2.5)));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in
            [r#"{"v":"abc"}"#, r#"{"v":true}"#, r#"{"v":""}"#, r#"{"v":[1]}"#, r#"{"v":1e999999}"#, r#"{"v":null}"#]
        {
            assert!(v(bad).is_err(), "{bad}");
        }
    }
}
