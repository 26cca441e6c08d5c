//! HashiCorp Vault KV v2 reads for `vault:` secret references. Never logs or returns response bodies.

use secrecy::{ExposeSecret, SecretString};

use crate::error::Error;

/// One KV v2 read.
pub(crate) struct KvRequest<'a> {
    /// The reference as written, for error messages.
    pub reference: String,
    pub addr: &'a str,
    pub namespace: Option<&'a str>,
    pub token: &'a SecretString,
    pub mount: &'a str,
    pub path: &'a str,
    pub field: &'a str,
}

/// `GET {addr}/v1/{mount}/data/{path}` and returns `data.data.{field}`.
pub(crate) async fn read_kv2(
    http: &reqwest::Client,
    req: KvRequest<'_>,
) -> Result<SecretString, Error> {
    let response_error = |reason: String| Error::VaultResponse {
        reference: req.reference.clone(),
        reason,
    };
    let mut url = reqwest::Url::parse(req.addr).map_err(|e| Error::VaultNotConfigured {
        reference: req.reference.clone(),
        missing: format!("a valid Vault address ({e})"),
    })?;
    {
        let mut segments = url
            .path_segments_mut()
            .map_err(|()| Error::VaultNotConfigured {
                reference: req.reference.clone(),
                missing: "a Vault address that can carry a path".into(),
            })?;
        segments
            .pop_if_empty()
            .extend(["v1", req.mount, "data"])
            .extend(req.path.split('/'));
    }
    let mut request = http
        .get(url)
        .header("X-Vault-Token", req.token.expose_secret());
    if let Some(ns) = req.namespace {
        request = request.header("X-Vault-Namespace", ns);
    }
    let response = request.send().await.map_err(|source| Error::VaultRequest {
        reference: req.reference.clone(),
        source,
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(Error::VaultStatus {
            reference: req.reference.clone(),
            status: status.as_u16(),
        });
    }
    let mut body: serde_json::Value = response.json().await.map_err(|source| {
        if source.is_decode() {
            // A 200 that is not JSON is a wrong address (a proxy page), not a transient fault.
            response_error("Vault response is not JSON (is the address a Vault server?)".into())
        } else {
            Error::VaultRequest {
                reference: req.reference.clone(),
                source,
            }
        }
    })?;
    let data = body
        .get_mut("data")
        .and_then(|d| d.get_mut("data"))
        .and_then(serde_json::Value::as_object_mut)
        .ok_or_else(|| {
            response_error(
                "Vault response has no `data.data` object (is the mount KV version 2?)".into(),
            )
        })?;
    match data.remove(req.field) {
        Some(serde_json::Value::String(value)) => Ok(SecretString::from(value)),
        Some(_) => Err(response_error(format!(
            "field `{}` is not a string",
            req.field
        ))),
        None => Err(response_error(format!(
            "field `{}` not found in the secret",
            req.field
        ))),
    }
}
