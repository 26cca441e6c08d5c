//! `pipeline.yaml`'s `kafka:` section → client settings: the one mapping every service uses, so TLS,
//! SASL and transaction timeouts mean the same thing in capture, masker and the sinks.

use cdc_config::{ExposeSecret, KafkaConfig, KafkaProtocol, SecretRef, SecretResolver};
use secrecy::SecretString;

use crate::error::Error;
use crate::settings::{KafkaSettings, ProducerSettings, SaslMechanism, SaslSettings, SslSettings};

/// Connection settings from the `kafka:` section, resolving its secret references.
pub async fn settings_from_config(
    kafka: &KafkaConfig,
    client_id: &str,
    secrets: &SecretResolver,
) -> Result<KafkaSettings, Error> {
    let mut s = KafkaSettings::new(kafka.bootstrap_servers.join(","), client_id);
    let sec = &kafka.security;
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    if matches!(sec.protocol, KafkaProtocol::Ssl | KafkaProtocol::SaslSsl) {
        let key_password = match &sec.client_key_password {
            Some(r) => Some(resolve(r, "kafka.security.client_key_password", secrets).await?),
            None => None,
        };
        s.ssl = Some(SslSettings {
            ca_location: path(&sec.ca_cert_path),
            certificate_location: path(&sec.client_cert_path),
            key_location: path(&sec.client_key_path),
            key_password,
        });
    }
    if sec.protocol == KafkaProtocol::SaslSsl {
        let (Some(user), Some(password)) = (&sec.sasl_username, &sec.sasl_password) else {
            return Err(Error::InvalidSettings {
                reason: "kafka.security.sasl_username and kafka.security.sasl_password are \
                         required when kafka.security.protocol is sasl_ssl"
                    .into(),
            });
        };
        let username = resolve(user, "kafka.security.sasl_username", secrets).await?;
        s.sasl = Some(SaslSettings {
            mechanism: match sec.sasl_mechanism {
                cdc_config::SaslMechanism::Plain => SaslMechanism::Plain,
                cdc_config::SaslMechanism::ScramSha256 => SaslMechanism::ScramSha256,
                cdc_config::SaslMechanism::ScramSha512 => SaslMechanism::ScramSha512,
            },
            username: username.expose_secret().to_owned(),
            password: resolve(password, "kafka.security.sasl_password", secrets).await?,
        });
    }
    s.validate()?;
    Ok(s)
}

/// Transactional-producer tuning from the `kafka:` section: deliveries may take as long as a
/// transaction may stay open, never longer.
pub fn producer_settings_from_config(kafka: &KafkaConfig) -> ProducerSettings {
    let txn = u32::try_from(kafka.transaction_timeout_ms).unwrap_or(u32::MAX);
    ProducerSettings {
        transaction_timeout_ms: txn,
        delivery_timeout_ms: txn,
        ..ProducerSettings::default()
    }
}

async fn resolve(
    reference: &SecretRef,
    key: &str,
    secrets: &SecretResolver,
) -> Result<SecretString, Error> {
    reference
        .resolve_with(secrets)
        .await
        .map_err(|e| Error::InvalidSettings {
            reason: format!("cannot resolve {key} ({reference}): {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> KafkaConfig {
        cdc_config::load_str("test.yaml", yaml, std::iter::empty::<(String, String)>())
            .expect("valid config")
            .kafka
    }

    #[tokio::test]
    async fn plaintext_maps_bootstrap_servers_only() {
        let kafka = config("kafka:\n  bootstrap_servers: [\"h1:9092\", \"h2:9092\"]\n");
        let s = settings_from_config(&kafka, "t", &SecretResolver::from_env())
            .await
            .expect("settings");
        assert_eq!(s.bootstrap_servers, "h1:9092,h2:9092");
        assert!(s.ssl.is_none() && s.sasl.is_none());
    }

    #[tokio::test]
    async fn sasl_without_credentials_names_the_keys() {
        // Validation rejects this in a file; the mapping must not rely on that.
        let mut kafka = config("kafka:\n  bootstrap_servers: [\"h1:9092\"]\n");
        kafka.security.protocol = KafkaProtocol::SaslSsl;
        let err = settings_from_config(&kafka, "t", &SecretResolver::from_env())
            .await
            .expect_err("credentials are required");
        assert!(
            err.to_string().contains("kafka.security.sasl_username"),
            "{err}"
        );
    }

    #[test]
    fn producer_timeouts_follow_the_transaction_timeout() {
        let kafka = config("kafka:\n  transaction_timeout_ms: 30000\n");
        let p = producer_settings_from_config(&kafka);
        assert_eq!(p.transaction_timeout_ms, 30000);
        assert_eq!(p.delivery_timeout_ms, 30000);
    }
}
