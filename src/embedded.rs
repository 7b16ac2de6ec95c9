//! The embedded parts a lab or a demo runs without hardware: the simulated reader served over
//! TCP on loopback ([`SimDevice`]), the in-process sandbox gateway ([`SandboxHandle`]) and the
//! sandbox's test credentials ([`sandbox_gateway`]).
//!
//! They exist with the default `sim` feature. A till build (`--no-default-features`) links
//! neither the simulator nor the sandbox: there the same names are uninhabited stand-ins whose
//! constructors fail with a message saying what the build leaves out, so the front ends
//! (`sale`, `serve`, `preflight`, …) compile unchanged and tell the user what to do.

#[cfg(feature = "sim")]
pub use with_sim::*;
#[cfg(not(feature = "sim"))]
pub use without_sim::*;

#[cfg(feature = "sim")]
mod with_sim {
    use std::sync::Arc;

    use anyhow::bail;

    use crate::driver::DeviceAddr;
    use crate::gateway::http::{HttpSettings, NumberGateway, PaiGateway, Pay1stGateway};
    use crate::gateway::number::NumberConfig;
    use crate::gateway::pay1st::Pay1stConfig;
    use crate::gateway::paymentsai::PaiConfig;
    use crate::gateway::{Dialect, Gateway, Secret, SystemClock};
    use emvbridge_sim::transport::DeviceHandle;

    pub use emvbridge_sandbox::SandboxHandle;

    /// Starts the sandbox gateway in-process on loopback.
    ///
    /// # Errors
    /// No loopback socket.
    pub async fn start_sandbox() -> anyhow::Result<SandboxHandle> {
        emvbridge_sandbox::spawn(emvbridge_sandbox::SandboxConfig::default())
            .await
            .map_err(|e| anyhow::anyhow!("cannot start the sandbox gateway: {e}"))
    }

    /// The embedded simulated reader: a `SimReader` served over TCP on loopback.
    pub struct SimDevice {
        /// Where the bridge connects (`tcp://127.0.0.1:PORT`).
        pub addr: DeviceAddr,
        /// Control of the simulated device (insert/remove card, PIN, faults).
        pub handle: DeviceHandle,
        task: tokio::task::JoinHandle<()>,
    }

    impl SimDevice {
        /// Starts the simulator with `card` as its auto-insert card.
        ///
        /// # Errors
        /// An unknown card profile, or no loopback socket.
        pub async fn start(card: &str) -> anyhow::Result<SimDevice> {
            Self::start_with(card, emvbridge_sim::faults::FaultPlan::default(), 1).await
        }

        /// Starts the simulator with `card`, line/flow `faults` (the `vipa-sim --faults` plan)
        /// drawn from `seed`: what `emvbridge sale --sim-faults` and `emvbridge soak` use.
        ///
        /// # Errors
        /// An unknown card profile, or no loopback socket.
        pub async fn start_with(
            card: &str,
            faults: emvbridge_sim::faults::FaultPlan,
            seed: u64,
        ) -> anyhow::Result<SimDevice> {
            if emvbridge_sim::card::profile(card).is_none() {
                bail!(
                    "unknown card profile {:?} (try: {})",
                    card,
                    emvbridge_sim::card::profile_names()
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let local = listener.local_addr()?;
            let config = emvbridge_sim::reader::SimConfig {
                card: Some(card.to_owned()),
                seed,
                faults,
                ..Default::default()
            };
            let reader = emvbridge_sim::reader::SimReader::new(config, std::time::Instant::now());
            let (handle, control) = DeviceHandle::channel();
            let task = tokio::spawn(emvbridge_sim::transport::run_tcp(
                reader, listener, control, 0,
            ));
            Ok(SimDevice {
                addr: DeviceAddr::Tcp {
                    host: local.ip().to_string(),
                    port: local.port(),
                },
                handle,
                task,
            })
        }
    }

    impl Drop for SimDevice {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// The sandbox gateway's test credentials for `dialect` at `url`.
    pub fn sandbox_gateway(
        dialect: Dialect,
        url: &str,
        http: HttpSettings,
    ) -> anyhow::Result<Arc<dyn Gateway>> {
        let defaults = emvbridge_sandbox::SandboxConfig::default();
        Ok(match dialect {
            Dialect::PaymentsAi => Arc::new(PaiGateway::new(
                PaiConfig {
                    base_url: format!("{url}/pai"),
                    organization_id: defaults.pai.organization_id.clone(),
                    api_key: Secret::new(defaults.pai.stage_credential()),
                    website_id: defaults.pai.website_id.clone(),
                    customer_id: defaults.pai.customer_id.clone(),
                    emv_extension: true,
                },
                http,
            )?),
            Dialect::Number => Arc::new(NumberGateway::new(
                NumberConfig {
                    base_url: format!("{url}/number/APIcardProcNumber/v1.0.0"),
                    acct_code: defaults.number.acct_code.clone(),
                    token: Secret::new(defaults.number.token.clone()),
                    user_id: defaults.number.user_id.clone(),
                    hmac_secret: Secret::new(defaults.number.hmac_secret.clone()),
                    merch_id: None,
                    currency: "USD".into(),
                    emv_extension: true,
                },
                http,
                Arc::new(SystemClock),
            )?),
            Dialect::Pay1st => Arc::new(Pay1stGateway::new(
                Pay1stConfig {
                    base_url: format!("{url}/pay1st"),
                    api_key: Secret::new(defaults.pay1st.api_key.clone()),
                    api_secret: Secret::new(defaults.pay1st.api_secret.clone()),
                    signing_key: Secret::new(defaults.pay1st.signing_key.clone()),
                    country_code: "NG".into(),
                    callback_url: None,
                    webhook_url: None,
                    emv_extension: true,
                    token_refresh_secs: 3000,
                },
                http,
                Arc::new(SystemClock),
            )?),
        })
    }
}

#[cfg(not(feature = "sim"))]
mod without_sim {
    use std::sync::Arc;

    use crate::driver::DeviceAddr;
    use crate::gateway::http::HttpSettings;
    use crate::gateway::{Dialect, Gateway};

    const NO_SIM: &str = "this build leaves out the simulated reader and the sandbox gateway \
                          (built without the `sim` feature): give --device and a real gateway, \
                          or build with `--features sim`";

    /// Without the `sim` feature there is no sandbox gateway.
    pub enum SandboxHandle {}

    impl SandboxHandle {
        /// Its URL (never called: the type has no values).
        pub fn url(&self) -> String {
            match *self {}
        }
        /// Stops it (never called: the type has no values).
        pub async fn shutdown(self) {
            match self {}
        }
    }

    /// Always fails: this build has no sandbox gateway.
    ///
    /// # Errors
    /// Always.
    pub async fn start_sandbox() -> anyhow::Result<SandboxHandle> {
        anyhow::bail!("no --gateway given: {NO_SIM}")
    }

    /// Without the `sim` feature there is no simulated reader: the private field makes the
    /// type impossible to construct.
    pub struct SimDevice {
        /// Where the bridge would connect.
        pub addr: DeviceAddr,
        _none: std::convert::Infallible,
    }

    impl SimDevice {
        /// Always fails: this build has no simulated reader.
        ///
        /// # Errors
        /// Always.
        pub async fn start(_card: &str) -> anyhow::Result<SimDevice> {
            anyhow::bail!("no --device given: {NO_SIM}")
        }
    }

    /// Always fails: the sandbox's test credentials are not in this build.
    ///
    /// # Errors
    /// Always.
    pub fn sandbox_gateway(
        _dialect: Dialect,
        _url: &str,
        _http: HttpSettings,
    ) -> anyhow::Result<Arc<dyn Gateway>> {
        anyhow::bail!("a sandbox gateway URL needs the sandbox's test credentials: {NO_SIM}")
    }
}
