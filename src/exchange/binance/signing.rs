//! HMAC-SHA256 request signing as Binance specifies it: the signature covers the query string and the body
//! exactly as sent, so the adapter builds the query once, signs that text and appends `&signature=`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Hex HMAC-SHA256 of `payload` under `secret`.
pub fn sign(secret: &str, payload: &str) -> String {
    // HMAC accepts keys of any length, so this never fails.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(payload.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Checks a hex signature (case-insensitive, as Binance accepts) in constant time.
pub fn verify(secret: &str, payload: &str, signature_hex: &str) -> bool {
    let Ok(expected) = hex::decode(signature_hex.to_ascii_lowercase()) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { return false };
    mac.update(payload.as_bytes());
    mac.verify_slice(&expected).is_ok()
}

/// URL-encodes `params` in order, as the query string to sign and send.
pub fn query_string(params: &[(&str, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The official example from Binance's REST documentation.
    #[test]
    fn official_test_vector() {
        let secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
        let payload = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000\
                       &timestamp=1499827319559";
        let sig = sign(secret, payload);
        assert_eq!(sig, "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71");
        assert!(verify(secret, payload, &sig.to_uppercase()));
        assert!(!verify(secret, "symbol=LTCBTC", &sig));
        assert!(!verify(secret, payload, "not-hex"));
    }

    #[test]
    fn query_strings_are_encoded_in_order() {
        let q = query_string(&[("symbol", "BTCUSDT".into()), ("symbols", "[\"A\",\"B\"]".into())]);
        assert_eq!(q, "symbol=BTCUSDT&symbols=%5B%22A%22%2C%22B%22%5D");
    }
}
