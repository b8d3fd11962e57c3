//! Authentication: Basic till credentials (cached), OAuth JWTs, admin tokens, and attribution.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::model::{Actor, Permissions, Principal};
use super::password::{random_token, verify_secret};
use super::store;
use crate::config::AuthSettings;
use crate::db::{Db, DbError};
use crate::error::{ApiError, Code};
use crate::org::model::{OrgId, StoreId, TillId};
use crate::org::store as org_store;

/// Prefix of admin tokens, which tells them apart from JWTs in `Authorization: Bearer`.
pub const ADMIN_TOKEN_PREFIX: &str = "perks_admin_";

/// Why a request could not be authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("authentication failed")]
    Failed,
    #[error("token is invalid or expired")]
    BadToken,
    #[error("{0}")]
    Attribution(ApiError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Failed => ApiError::new(Code::AuthenticationFailed),
            AuthError::BadToken => ApiError::with_message(
                Code::AuthenticationFailed,
                "Authentication failed: the access token is invalid or expired",
            ),
            AuthError::Attribution(api) => api,
            AuthError::Db(db) => ApiError::from(db),
        }
    }
}

/// Claims of a Perks OAuth access token.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub client_id: i64,
    pub org_id: i64,
    pub iat: i64,
    pub exp: i64,
}

struct CachedCredential {
    till_id: i64,
    credential_version: i64,
    verified_at: Instant,
}

/// Verifies credentials and issues tokens. One per process, shared by all requests.
pub struct AuthService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    settings: AuthSettings,
    /// Verified Basic headers, keyed by the SHA-256 of the header value.
    verified: Mutex<HashMap<[u8; 32], CachedCredential>>,
}

impl AuthService {
    /// Loads (or creates, on first start) the installation's token-signing secret.
    pub async fn load(db: &Db, settings: AuthSettings) -> Result<AuthService, DbError> {
        let mut tx = db.begin_write().await?;
        let secret = store::installation_secret(&mut tx, "jwt_secret", &random_token(64)).await?;
        tx.commit().await?;
        Ok(AuthService {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            settings,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Exchanges an OAuth client key and secret for a signed access token and its lifetime.
    pub async fn generate_token(
        &self,
        db: &Db,
        key: &str,
        secret: &str,
    ) -> Result<(String, i64), AuthError> {
        let mut conn = db.read().await?;
        let client = store::oauth_client_by_key(&mut conn, key).await?;
        drop(conn);
        let Some(client) = client.filter(|c| c.is_active) else {
            return Err(AuthError::Failed);
        };
        let secret = secret.to_string();
        let hash = client.secret_hash.clone();
        let ok = tokio::task::spawn_blocking(move || verify_secret(&secret, &hash))
            .await
            .unwrap_or(false);
        if !ok {
            return Err(AuthError::Failed);
        }
        let token = self.issue_token(
            client.org_id,
            client.id,
            &client.client_key,
            client.token_ttl_seconds,
        )?;
        Ok((token, client.token_ttl_seconds))
    }

    /// Signs a token for a client; `ttl_seconds` may be negative in tests to make one expired.
    pub fn issue_token(
        &self,
        org_id: i64,
        client_id: i64,
        client_key: &str,
        ttl_seconds: i64,
    ) -> Result<String, AuthError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: "perks".into(),
            sub: client_key.into(),
            client_id,
            org_id,
            iat: now,
            exp: now + ttl_seconds,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|_| AuthError::BadToken)
    }

    /// Authenticates a request from its headers and resolves its acting store and till.
    pub async fn authenticate(
        &self,
        db: &Db,
        headers: &HeaderMap,
        request_id: Option<String>,
    ) -> Result<Principal, AuthError> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let authorization = header(AUTHORIZATION.as_str());
        let bearer = authorization
            .and_then(|a| a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer ")))
            .map(str::trim);
        // A staff access token makes the request act as that associate, whatever other
        // credentials it carries; it picks its own store, so attribution headers are refused.
        if let Some(token) = header("x-cap-api-access-token").filter(|t| !t.is_empty()) {
            let mut principal = crate::staff::service::authenticate_token(db, token)
                .await?
                .ok_or(AuthError::BadToken)?;
            principal.request_id = request_id;
            if header("x-cap-api-attribution-lookup-type").is_some()
                || header("x-cap-api-attribution-entity-type").is_some()
            {
                return Err(AuthError::Attribution(ApiError::invalid(
                    "Attribution headers are not accepted with a staff access token",
                )));
            }
            return Ok(principal);
        }
        let mut principal = if let Some(token) =
            header("x-cap-api-oauth-token").or_else(|| header("cap-api-access-token"))
        {
            self.verify_jwt(db, token).await?
        } else if let Some(token) = bearer {
            if token.starts_with(ADMIN_TOKEN_PREFIX) {
                self.verify_admin_token(db, token).await?
            } else {
                self.verify_jwt(db, token).await?
            }
        } else if let Some(basic) = authorization
            .and_then(|a| a.strip_prefix("Basic ").or_else(|| a.strip_prefix("basic ")))
        {
            self.verify_basic(db, basic.trim()).await?
        } else {
            return Err(AuthError::Failed);
        };
        principal.request_id = request_id;
        self.apply_attribution(db, headers, &mut principal).await?;
        Ok(principal)
    }

    async fn verify_basic(&self, db: &Db, encoded: &str) -> Result<Principal, AuthError> {
        let decoded = BASE64.decode(encoded).map_err(|_| AuthError::Failed)?;
        let decoded = String::from_utf8(decoded).map_err(|_| AuthError::Failed)?;
        let (username, password_md5) = decoded.split_once(':').ok_or(AuthError::Failed)?;
        let mut conn = db.read().await?;
        let creds = store::till_credentials(&mut conn, username).await?;
        drop(conn);
        let Some(creds) = creds.filter(|c| c.is_active) else {
            return Err(AuthError::Failed);
        };
        let cache_key: [u8; 32] = Sha256::digest(encoded.as_bytes()).into();
        if !self.recently_verified(&cache_key, creds.till_id, creds.credential_version) {
            let md5 = password_md5.to_ascii_lowercase();
            let hash = creds.password_hash.clone();
            let ok = tokio::task::spawn_blocking(move || verify_secret(&md5, &hash))
                .await
                .unwrap_or(false);
            if !ok {
                return Err(AuthError::Failed);
            }
            self.remember(cache_key, creds.till_id, creds.credential_version);
        }
        Ok(Principal {
            org: OrgId(creds.org_id),
            actor: Actor::Till { id: TillId(creds.till_id), code: creds.code },
            store: Some(StoreId(creds.store_id)),
            till: Some(TillId(creds.till_id)),
            permissions: parse_permissions(&creds.permissions),
            request_id: None,
        })
    }

    fn recently_verified(&self, key: &[u8; 32], till_id: i64, version: i64) -> bool {
        let ttl = Duration::from_secs(self.settings.credential_cache_seconds);
        let Ok(cache) = self.verified.lock() else { return false };
        cache.get(key).is_some_and(|c| {
            c.till_id == till_id && c.credential_version == version && c.verified_at.elapsed() < ttl
        })
    }

    fn remember(&self, key: [u8; 32], till_id: i64, credential_version: i64) {
        let Ok(mut cache) = self.verified.lock() else { return };
        if cache.len() >= self.settings.credential_cache_entries {
            // Dropping everything is crude but bounded; the next requests re-verify once each.
            cache.clear();
        }
        cache.insert(
            key,
            CachedCredential { till_id, credential_version, verified_at: Instant::now() },
        );
    }

    async fn verify_jwt(&self, db: &Db, token: &str) -> Result<Principal, AuthError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_issuer(&["perks"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| AuthError::BadToken)?;
        let org = OrgId(data.claims.org_id);
        let mut conn = db.read().await?;
        let client = store::oauth_client(&mut conn, org, data.claims.client_id).await?;
        let Some(client) = client.filter(|c| c.is_active) else {
            return Err(AuthError::BadToken);
        };
        Ok(Principal {
            org,
            actor: Actor::OAuthClient { id: client.id, key: client.client_key },
            store: client.default_store_id.map(StoreId),
            till: client.default_till_id.map(TillId),
            permissions: parse_permissions(&client.permissions),
            request_id: None,
        })
    }

    async fn verify_admin_token(&self, db: &Db, token: &str) -> Result<Principal, AuthError> {
        let hash = hex::encode(Sha256::digest(token.as_bytes()));
        let mut conn = db.read().await?;
        let (token_id, org_id) =
            store::admin_token(&mut conn, &hash).await?.ok_or(AuthError::Failed)?;
        Ok(Principal {
            org: OrgId(org_id),
            actor: Actor::Admin { token_id },
            store: None,
            till: None,
            permissions: Permissions::admin(),
            request_id: None,
        })
    }

    /// Applies `X-CAP-API-ATTRIBUTION-*` headers: the request then acts as that store or till.
    async fn apply_attribution(
        &self,
        db: &Db,
        headers: &HeaderMap,
        principal: &mut Principal,
    ) -> Result<(), AuthError> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let kind = header("x-cap-api-attribution-lookup-type")
            .or_else(|| header("x-cap-api-attribution-entity-type"));
        let value = header("x-cap-api-attribution-lookup")
            .or_else(|| header("x-cap-api-attribution-entity-code"));
        let (kind, value) = match (kind, value) {
            (None, None) => return Ok(()),
            (None, Some(_)) => {
                return Err(AuthError::Attribution(ApiError::new(
                    Code::AttributionLookupTypeRequired,
                )));
            }
            (Some(_), None) => {
                return Err(AuthError::Attribution(ApiError::invalid(
                    "X-CAP-API-ATTRIBUTION-LOOKUP is required with X-CAP-API-ATTRIBUTION-LOOKUP-TYPE",
                )));
            }
            (Some(kind), Some(value)) => (kind.to_ascii_uppercase(), value.to_string()),
        };
        let not_found = || {
            AuthError::Attribution(ApiError::invalid(format!(
                "No {kind} '{value}' in this org for attribution"
            )))
        };
        let mut conn = db.read().await?;
        let org = principal.org;
        match kind.as_str() {
            "TILL" | "TILL_CODE" => {
                let lookup =
                    org_store::TillLookup { code: Some(value.clone()), ..Default::default() };
                let till =
                    org_store::find_till(&mut conn, org, &lookup).await?.ok_or_else(not_found)?;
                principal.till = Some(TillId(till.id));
                principal.store = Some(StoreId(till.store_id));
            }
            "STORE_CODE" | "STORE_NAME" | "STORE_EXTERNAL_ID" | "STORE_EXTERNAL_ID_1" => {
                let store = match kind.as_str() {
                    "STORE_CODE" => org_store::find_store_by_code(&mut conn, org, &value).await?,
                    "STORE_NAME" => {
                        let filter = org_store::StoreFilter {
                            name_prefix: Some(value.clone()),
                            ..Default::default()
                        };
                        let (stores, _) =
                            org_store::list_stores(&mut conn, org, &filter, 100, 0).await?;
                        stores.into_iter().find(|s| s.name == value)
                    }
                    _ => {
                        let filter = org_store::StoreFilter {
                            external_id_prefix: Some(value.clone()),
                            ..Default::default()
                        };
                        let (stores, _) =
                            org_store::list_stores(&mut conn, org, &filter, 100, 0).await?;
                        stores.into_iter().find(|s| {
                            serde_json::from_str::<Vec<String>>(&s.external_ids)
                                .map(|ids| ids.contains(&value))
                                .unwrap_or(false)
                        })
                    }
                }
                .ok_or_else(not_found)?;
                principal.store = Some(StoreId(store.id));
                principal.till = None;
            }
            other => {
                return Err(AuthError::Attribution(ApiError::invalid(format!(
                    "Invalid X-CAP-API-ATTRIBUTION-LOOKUP-TYPE '{other}': use TILL, STORE_CODE, \
                     STORE_NAME, STORE_EXTERNAL_ID or STORE_EXTERNAL_ID_1"
                ))));
            }
        }
        Ok(())
    }
}

fn parse_permissions(json: &str) -> Permissions {
    serde_json::from_str(json).unwrap_or_else(|e| {
        tracing::error!(error = %e, "unreadable access group permissions; granting none");
        Permissions::default()
    })
}
