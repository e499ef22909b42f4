//! Leader election on a coordination.k8s.io Lease, so that of several operator replicas only
//! one reconciles. The lease is taken when it is free or expired, renewed every few seconds
//! with optimistic concurrency (resourceVersion), and a leader that cannot renew before it
//! expires stops the process: a restart is the simplest way to never act with two leaders.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Client};

use crate::error::{is_conflict, is_not_found, kube as kerr, Result};

/// How long a lease lasts without renewal.
pub const LEASE_SECONDS: i32 = 15;
/// How often the leader renews it (and a candidate retries).
pub const RENEW_EVERY: Duration = Duration::from_secs(5);

pub struct Election {
    api: Api<Lease>,
    name: String,
    identity: String,
}

/// Whether a lease observed at `now` may be taken by `identity`.
pub fn may_take(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> bool {
    let Some(spec) = spec else {
        return true;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => true,
        Some(holder) if holder == identity => true,
        Some(_) => {
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS));
            let renewed = spec
                .renew_time
                .as_ref()
                .or(spec.acquire_time.as_ref())
                .map(|t| t.0);
            renewed.is_none_or(|r| r + SignedDuration::from_secs(duration) < now)
        }
    }
}

impl Election {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Election {
        Election {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
        }
    }

    /// One attempt to take or renew the lease; Ok(true) when we hold it afterwards.
    pub async fn try_acquire(&self) -> Result<bool> {
        let now = Timestamp::now();
        let existing = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(kerr(format!("reading Lease {}", self.name)))?;
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(LEASE_SECONDS),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(kerr(format!("creating Lease {}", self.name))(e)),
            };
        };
        if !may_take(lease.spec.as_ref(), &self.identity, now) {
            return Ok(false);
        }
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.lease_duration_seconds = Some(LEASE_SECONDS);
        spec.renew_time = Some(MicroTime(now));
        // replace carries the resourceVersion we read: a concurrent taker makes it a 409.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) || is_not_found(&e) => Ok(false),
            Err(e) => Err(kerr(format!("renewing Lease {}", self.name))(e)),
        }
    }

    /// Waits until this replica leads.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election"),
            }
            tokio::time::sleep(RENEW_EVERY).await;
        }
    }

    /// Renews the lease until a renewal fails for longer than the lease lasts; returns then.
    pub async fn hold(&self) {
        let mut last_ok = std::time::Instant::now();
        let limit = Duration::from_secs(u64::try_from(LEASE_SECONDS).unwrap_or(15));
        loop {
            tokio::time::sleep(RENEW_EVERY).await;
            match self.try_acquire().await {
                Ok(true) => last_ok = std::time::Instant::now(),
                Ok(false) => {
                    tracing::error!(lease = %self.name, "another replica took the lease");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "cannot renew the lease"),
            }
            if last_ok.elapsed() > limit {
                tracing::error!(lease = %self.name, "could not renew the lease before it expired");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed_secs_ago: i64, now: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(now - SignedDuration::from_secs(renewed_secs_ago))),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_held_lease_is_only_taken_once_expired() {
        let now = Timestamp::now();
        assert!(may_take(None, "me", now));
        assert!(may_take(Some(&spec("me", 3, now)), "me", now));
        assert!(!may_take(Some(&spec("other", 3, now)), "me", now));
        assert!(may_take(Some(&spec("other", 16, now)), "me", now));
        assert!(may_take(Some(&LeaseSpec::default()), "me", now));
    }
}
