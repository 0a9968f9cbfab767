//! Request parameters and Upbit's JWT: every private call carries `Authorization: Bearer <JWT>` signed with the
//! secret key (HS256), with a fresh nonce and, when the request has parameters, the SHA-512 of the parameter
//! string (`query_hash`). The string hashed is exactly the parameters sent, in the order sent, unencoded, so
//! the same [`Params`] value builds the URL query or JSON body and the hash.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use sha2::{Digest, Sha512};

use super::error::UpbitError;
use super::settings::ApiSecret;

/// Ordered request parameters. Order matters: Upbit hashes them in the order they appear in the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// No parameters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `key=value` (repeat a key ending in `[]` for arrays, as Upbit expects).
    pub fn push(mut self, key: &str, value: impl Into<String>) -> Self {
        self.0.push((key.to_owned(), value.into()));
        self
    }

    /// Appends `key=value` when a value is present.
    pub fn push_opt(self, key: &str, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(v) => self.push(key, v),
            None => self,
        }
    }

    /// True when there is nothing to send (and so no `query_hash`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// `k=v&k=v`, unencoded: the text whose SHA-512 is the `query_hash`.
    pub fn hash_input(&self) -> String {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
    }

    /// A JSON object with the fields in order (serde_json's map would sort them and break the hash).
    pub fn json_body(&self) -> String {
        let fields: Vec<String> = self
            .0
            .iter()
            .map(|(k, v)| {
                // Serialising a &str to JSON cannot fail.
                let k = serde_json::to_string(k).unwrap_or_default();
                let v = serde_json::to_string(v).unwrap_or_default();
                format!("{k}:{v}")
            })
            .collect();
        format!("{{{}}}", fields.join(","))
    }
}

/// Lower-case hex SHA-512 of `input`.
pub fn sha512_hex(input: &str) -> String {
    Sha512::digest(input.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Serialize)]
struct Claims<'a> {
    access_key: &'a str,
    nonce: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    query_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query_hash_alg: Option<&'static str>,
}

/// Signs private requests. Holds the keys; never prints them.
pub struct Signer {
    access_key: ApiSecret,
    key: EncodingKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer([redacted])")
    }
}

impl Signer {
    /// A signer for these keys. The secret is used as raw bytes, as Upbit specifies (not base64-decoded).
    pub fn new(access_key: &ApiSecret, secret_key: &ApiSecret) -> Self {
        Self { access_key: access_key.clone(), key: EncodingKey::from_secret(secret_key.expose().as_bytes()) }
    }

    /// The bearer token for a request with `params`; a new nonce every call, since Upbit refuses a reused one.
    pub fn token(&self, params: &Params) -> Result<String, UpbitError> {
        let query_hash = (!params.is_empty()).then(|| sha512_hex(&params.hash_input()));
        let claims = Claims {
            access_key: self.access_key.expose(),
            nonce: uuid::Uuid::new_v4().to_string(),
            query_hash_alg: query_hash.as_ref().map(|_| "SHA512"),
            query_hash,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key)
            .map_err(|e| UpbitError::Signing(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    #[test]
    fn hash_input_and_body_keep_order_and_stay_unencoded() {
        let p = Params::new().push("market", "KRW-BTC").push("states[]", "wait").push("states[]", "watch");
        assert_eq!(p.hash_input(), "market=KRW-BTC&states[]=wait&states[]=watch");
        let b = Params::new().push("market", "KRW-BTC").push("side", "bid").push("ord_type", "price");
        assert_eq!(b.json_body(), r#"{"market":"KRW-BTC","side":"bid","ord_type":"price"}"#);
        assert_eq!(
            sha512_hex("abc"),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
    }

    #[test]
    fn token_carries_key_nonce_and_hash_only_when_there_are_params() {
        let s = Signer::new(&ApiSecret::new("ak"), &ApiSecret::new("sk"));
        let mut v = Validation::new(Algorithm::HS256);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        let decode = |t: &str| {
            jsonwebtoken::decode::<serde_json::Value>(t, &DecodingKey::from_secret(b"sk"), &v).unwrap().claims
        };
        let c = decode(&s.token(&Params::new()).unwrap());
        assert_eq!(c["access_key"], "ak");
        assert!(c.get("query_hash").is_none() && c.get("query_hash_alg").is_none());
        let p = Params::new().push("uuid", "x");
        let c2 = decode(&s.token(&p).unwrap());
        assert_eq!(c2["query_hash"], sha512_hex("uuid=x"));
        assert_eq!(c2["query_hash_alg"], "SHA512");
        assert_ne!(c["nonce"], c2["nonce"]);
        assert!(
            jsonwebtoken::decode::<serde_json::Value>(&s.token(&p).unwrap(), &DecodingKey::from_secret(b"other"), &v)
                .is_err()
        );
    }
}
