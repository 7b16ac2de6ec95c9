//! Sandbox configuration: credentials per dialect, limits and the seed (gateways.md §4.1–§4.2).
//!
//! Defaults are well-known *test* credentials, published with the sandbox on purpose; they
//! unlock nothing real. `Debug` is implemented by hand so that secrets never reach a log.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Everything the sandbox needs to start. Load from TOML with [`SandboxConfig::from_toml`].
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// Seed for every generated id, key and auth code: same seed, same sequence.
    pub seed: u64,
    /// Largest request body accepted (bytes); larger bodies get the dialect's 413/400 shape.
    pub max_body_bytes: usize,
    /// Virtual clock start (Unix seconds). `None`: the wall clock at start-up.
    pub clock_start_epoch: Option<i64>,
    /// Number (Aspen REST) dialect.
    pub number: NumberConfig,
    /// PaymentsAI dialect.
    pub pai: PaiConfig,
    /// Pay1st dialect.
    pub pay1st: Pay1stConfig,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            seed: 0,
            max_body_bytes: 64 * 1024,
            clock_start_epoch: None,
            number: NumberConfig::default(),
            pai: PaiConfig::default(),
            pay1st: Pay1stConfig::default(),
        }
    }
}

impl fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("seed", &self.seed)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("clock_start_epoch", &self.clock_start_epoch)
            .field("number.acct_code", &self.number.acct_code)
            .field("pai.organization_id", &self.pai.organization_id)
            .finish_non_exhaustive()
    }
}

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not valid TOML for [`SandboxConfig`].
    #[error("bad sandbox config: {0}")]
    Toml(String),
}

impl SandboxConfig {
    /// Parses a TOML document; missing keys keep their defaults, unknown keys are an error.
    ///
    /// # Errors
    /// [`ConfigError::Toml`] with the parser's message (which never quotes secret values).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Toml(e.message().to_owned()))
    }
}

/// Number credentials and limits (§1.3, §4.2).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NumberConfig {
    /// `AcctCode` accepted by `/Authenticate`.
    pub acct_code: String,
    /// The 32-hex `Token` accepted by `/Authenticate`.
    pub token: String,
    /// `ThisUser.ID` (an integer in the definition), the third part of the PCI-mode SessKey.
    pub user_id: String,
    /// HMAC secret of the PCI-mode SessKey.
    pub hmac_secret: String,
    /// Merchant id returned in `MerchantList`.
    pub merch_id: i64,
    /// SessKey lifetime in virtual seconds (25 h, §1.3).
    pub session_ttl_secs: i64,
    /// Consecutive failed authentications that lock the caller's IP (§1.3).
    pub lockout_after: u32,
    /// Accepted skew of the HMAC epoch (\[I\] 300 s, §4.2).
    pub hmac_skew_secs: i64,
}

impl Default for NumberConfig {
    fn default() -> Self {
        NumberConfig {
            acct_code: "EP9000001".into(),
            token: "0123456789ABCDEF0123456789ABCDEF".into(),
            user_id: "1001".into(),
            hmac_secret: "sandbox-hmac-secret".into(),
            merch_id: 1,
            session_ttl_secs: 25 * 3600,
            lockout_after: 6,
            hmac_skew_secs: 300,
        }
    }
}

/// What a PaymentsAI idempotency key reused with a different payload gets (§4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdemMismatch {
    /// Return the original response (default; extends the documented repeat behaviour).
    Original,
    /// `idem_mismatch=409`: answer 409.
    #[serde(rename = "409")]
    Conflict,
}

/// PaymentsAI credentials and webhook settings (§2.2, §4.2, §4.6).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaiConfig {
    /// Organization the API key belongs to (`org_…`).
    pub organization_id: String,
    /// The `websiteId` transactions must name (Rebilly `PostTransaction`).
    pub website_id: String,
    /// The `customerId` the terminal's transactions belong to.
    pub customer_id: String,
    /// Account id, first part of the key.
    pub account_id: String,
    /// Stage API key (ready to use, no exchange).
    pub api_key: String,
    /// API key id, last part of the key.
    pub api_key_id: String,
    /// Production-style temporal key for the exchange (`PATCH /v1/accounts/public-api/{acct}`).
    pub temporal_api_key: String,
    /// Temporal key lifetime (7 days, §2.2).
    pub temporal_ttl_secs: i64,
    /// Lower bound of the secret length (12, the PaymentsAI secret policy of §2.2).
    pub secret_min_len: usize,
    /// Upper bound of the secret length (30; the sandbox's own bound, §4.2).
    pub secret_max_len: usize,
    /// Default webhook URL (a registered destination takes precedence).
    pub webhook_url: Option<String>,
    /// Webhook HMAC secret.
    pub webhook_secret: String,
    /// Signature header name (\[GAP\] upstream; `X-Signature` by default).
    pub signature_header: String,
    /// Whether to add `X-Sim-Timestamp` \[EXT\] to deliveries.
    pub send_timestamp: bool,
    /// Idempotency mismatch policy.
    pub idem_mismatch: IdemMismatch,
}

impl Default for PaiConfig {
    fn default() -> Self {
        PaiConfig {
            organization_id: "org_sandbox".into(),
            website_id: "web_sandbox".into(),
            customer_id: "cus_sandbox".into(),
            account_id: "acc_sandbox".into(),
            api_key: "key_sandbox0001".into(),
            api_key_id: "kid_sandbox0001".into(),
            temporal_api_key: "tmp_sandbox_temporal_key".into(),
            temporal_ttl_secs: 7 * 24 * 3600,
            secret_min_len: 12,
            secret_max_len: 30,
            webhook_url: None,
            webhook_secret: "whsec_sandbox".into(),
            signature_header: "X-Signature".into(),
            send_timestamp: true,
            idem_mismatch: IdemMismatch::Original,
        }
    }
}

impl PaiConfig {
    /// The full `ApiKey` credential of the stage key: `<accountId>_<apiKey>_<apiKeyId>`.
    pub fn stage_credential(&self) -> String {
        format!("{}_{}_{}", self.account_id, self.api_key, self.api_key_id)
    }
}

/// Pay1st credentials (§3.2, §3.4).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pay1stConfig {
    /// API key (Basic user of the token call).
    pub api_key: String,
    /// API secret (Basic password of the token call).
    pub api_secret: String,
    /// Request-signing key.
    pub signing_key: String,
    /// Access-token lifetime (\[I\] 3600 s).
    pub token_ttl_secs: i64,
    /// Accepted `X-TIMESTAMP` skew (\[I\] 300 s).
    pub signature_skew_secs: i64,
    /// Webhook Basic-auth user; the webhook key is base64("user:pass") as text (§3.4).
    pub webhook_user: String,
    /// Webhook Basic-auth password.
    pub webhook_pass: String,
    /// Default webhook URL when the payment carries none.
    pub webhook_url: Option<String>,
    /// `partnerId` in webhook events.
    pub partner_id: i64,
    /// `partnerCode` in webhook events.
    pub partner_code: String,
}

impl Default for Pay1stConfig {
    fn default() -> Self {
        Pay1stConfig {
            api_key: "p1_sandbox_key".into(),
            api_secret: "p1_sandbox_secret".into(),
            signing_key: "hCyO_Flnu6aid-bhFYTYOowkxXRzoZkgzO32rB6Ik8Y".into(),
            token_ttl_secs: 3600,
            signature_skew_secs: 300,
            webhook_user: "apiuser".into(),
            webhook_pass: "apipassword".into(),
            webhook_url: None,
            partner_id: 1,
            partner_code: "SANDBOX".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_and_defaults() {
        let c = SandboxConfig::from_toml(
            "seed = 7\n[number]\nacct_code = \"EP1\"\n[pai]\nidem_mismatch = \"409\"\n",
        )
        .unwrap();
        assert_eq!(c.seed, 7);
        assert_eq!(c.number.acct_code, "EP1");
        assert_eq!(c.number.session_ttl_secs, 90_000);
        assert_eq!(c.pai.idem_mismatch, IdemMismatch::Conflict);
        assert!(SandboxConfig::from_toml("nope = 1").is_err());
        assert!(!format!("{c:?}").contains(&c.number.token));
    }
}
