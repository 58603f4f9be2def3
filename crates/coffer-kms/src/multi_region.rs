//! Multi-Region keys: ReplicateKey and UpdatePrimaryRegion.
//!
//! A multi-Region key is a set of keys with one `mrk-` id, one per region of the account
//! (Coffer scopes regions within one store, as Secrets Manager replication does). Every
//! key of the set holds the same material versions, each wrapped under the master key with
//! its own ARN; ciphertext binds the region-less ARN (see `service::sealing_identity`), so
//! any key of the set opens what another sealed. Each record keeps the set's primary region
//! and replica regions; ReplicateKey and UpdatePrimaryRegion rewrite every record of the set
//! in one transaction.

use crate::error::KmsError;
use crate::ids::key_arn;
use crate::model::{Imported, KeyManager, KeyRecord, KeyState, Material, MultiRegion, Tag};
use crate::service::{Accepts, Kms, material_context, require_enabled, save_key};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use coffer_core::model::Millis;
use coffer_core::{ErrorCode, Scope};
use coffer_store::WriteTxn;

/// What ReplicateKey asks for besides the key and region.
#[derive(Debug, Clone, Default)]
pub struct NewReplica {
    pub description: Option<String>,
    pub policy: Option<String>,
    pub tags: Vec<Tag>,
}

fn not_multi_region(key: &KeyRecord) -> KmsError {
    KmsError::rejected(
        ErrorCode::KmsUnsupportedOperation,
        format!("{} is not a multi-Region key.", key.arn),
    )
}

fn not_primary(key: &KeyRecord) -> KmsError {
    KmsError::rejected(
        ErrorCode::KmsUnsupportedOperation,
        format!("{} is not a multi-Region primary key.", key.arn),
    )
}

impl Kms {
    /// The key of the set `key` belongs to in `region`, if there is one.
    fn member(
        &self,
        tx: &dyn coffer_store::ReadTxn,
        key: &KeyRecord,
        region: &str,
    ) -> Result<Option<KeyRecord>, KmsError> {
        let scope = Scope::new(&key.scope.account, region);
        match self.find_key(tx, &scope, &key.key_id, Accepts::KeyOnly) {
            Ok(found) => Ok(Some(found)),
            Err(e) if e.code() == Some(ErrorCode::KmsNotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes `set` into every key of the set (the primary's region and each replica's).
    fn save_set(
        &self,
        tx: &mut dyn WriteTxn,
        key: &KeyRecord,
        set: &MultiRegion,
    ) -> Result<(), KmsError> {
        let regions = std::iter::once(&set.primary_region).chain(&set.replica_regions);
        for region in regions {
            if let Some(mut member) = self.member(tx, key, region)? {
                member.multi_region = Some(set.clone());
                save_key(tx, &member)?;
            }
        }
        Ok(())
    }

    /// ReplicateKey: a replica of the primary `key_id` in `replica_region`, with the same
    /// key id, spec, usage and material, and its own description, policy and tags.
    pub fn replicate_key(
        &self,
        tx: &mut dyn WriteTxn,
        scope: &Scope,
        key_id: &str,
        replica_region: &str,
        request: NewReplica,
        now: Millis,
    ) -> Result<KeyRecord, KmsError> {
        let primary = self.find_key(tx, scope, key_id, Accepts::KeyOnly)?;
        let Some(mut set) = primary.multi_region.clone() else {
            return Err(not_multi_region(&primary));
        };
        if set.primary_region != scope.region {
            return Err(not_primary(&primary));
        }
        if primary.state == KeyState::PendingDeletion {
            return Err(KmsError::pending_deletion(&primary.arn));
        }
        if primary.state == KeyState::Disabled {
            return Err(KmsError::disabled(&primary.arn));
        }
        if replica_region == scope.region {
            return Err(KmsError::validation(format!(
                "The replica region {replica_region} must be different from the primary key's region."
            )));
        }
        let replica_scope = Scope::new(&scope.account, replica_region);
        let replica_arn = key_arn(&replica_scope, &primary.key_id);
        if set.replica_regions.iter().any(|r| r == replica_region)
            || self.member(tx, &primary, replica_region)?.is_some()
        {
            return Err(KmsError::rejected(
                ErrorCode::KmsAlreadyExists,
                format!("Key {replica_arn} already exists"),
            ));
        }
        crate::service::check_new_tags(&request.tags)?;
        self.check_generation(tx)?;
        // Imported material is not copied, as at AWS: the replica waits for the same
        // material, imported by whoever holds it. Copying it gave whoever may replicate a
        // key of their own over it without ever holding the material, and kept it in the
        // replica after its owner deleted it (review 8, finding 05).
        let external = primary.is_external();
        // The same material versions, re-wrapped with the replica's ARN.
        let mut materials = Vec::with_capacity(primary.materials.len());
        for material in primary.materials.iter().filter(|_| !external) {
            let unwrapped = self.unwrap_for(&primary.arn, material)?;
            let wrapped = self
                .master_key()
                .wrap_key(&unwrapped, &material_context(&replica_arn, material.version));
            materials.push(Material {
                wrapped: STANDARD.encode(wrapped),
                generation: self.generation().map(str::to_string),
                ..material.clone()
            });
        }
        set.replica_regions.push(replica_region.to_string());
        let replica = KeyRecord {
            key_id: primary.key_id.clone(),
            scope: replica_scope,
            arn: replica_arn,
            description: request.description.unwrap_or_default(),
            manager: KeyManager::Customer,
            state: if external { KeyState::PendingImport } else { primary.state },
            created_ms: now,
            deletion_ms: None,
            pending_window_days: None,
            rotation_enabled: false,
            rotation_period_days: None,
            next_rotation_ms: None,
            on_demand_rotations: 0,
            materials,
            tags: request.tags,
            policy: request.policy,
            key_spec: primary.key_spec.clone(),
            key_usage: primary.key_usage.clone(),
            public_key: primary.public_key.clone(),
            origin: primary.origin.clone(),
            // Which material the set holds (a reimport must be that one), not its expiry.
            imported: primary.imported.as_ref().map(|i| Imported {
                material_id: i.material_id.clone(),
                expiration_model: None,
                valid_to_ms: None,
            }),
            multi_region: Some(set.clone()),
        };
        save_key(tx, &replica)?;
        self.save_set(tx, &primary, &set)?;
        Ok(replica)
    }

    /// UpdatePrimaryRegion: the replica in `region` becomes the primary, and `key_id` (the
    /// current primary) a replica.
    pub fn update_primary_region(
        &self,
        tx: &mut dyn WriteTxn,
        scope: &Scope,
        key_id: &str,
        region: &str,
    ) -> Result<(), KmsError> {
        let primary = self.find_key(tx, scope, key_id, Accepts::KeyOnly)?;
        let Some(set) = primary.multi_region.clone() else {
            return Err(not_multi_region(&primary));
        };
        if set.primary_region != scope.region {
            return Err(not_primary(&primary));
        }
        if primary.state != KeyState::Disabled {
            require_enabled(&primary)?;
        }
        if region == scope.region {
            return Ok(());
        }
        if !set.replica_regions.iter().any(|r| r == region) {
            let arn = key_arn(&Scope::new(&scope.account, region), &primary.key_id);
            return Err(KmsError::key_not_found(&arn));
        }
        let mut replicas: Vec<String> =
            set.replica_regions.iter().filter(|r| *r != region).cloned().collect();
        replicas.push(scope.region.clone());
        let updated = MultiRegion { primary_region: region.to_string(), replica_regions: replicas };
        self.save_set(tx, &primary, &updated)
    }

    /// The id of the material imported into another key of `key`'s multi-Region set, if
    /// any: every key of a set holds the same material, so the first import into any of
    /// them decides what the others accept.
    pub(crate) fn set_material_id(
        &self,
        tx: &dyn coffer_store::ReadTxn,
        key: &KeyRecord,
    ) -> Result<Option<String>, KmsError> {
        let Some(set) = &key.multi_region else { return Ok(None) };
        let others = std::iter::once(&set.primary_region)
            .chain(&set.replica_regions)
            .filter(|r| **r != key.scope.region);
        for region in others {
            if let Some(imported) = self.member(tx, key, region)?.and_then(|m| m.imported) {
                return Ok(Some(imported.material_id));
            }
        }
        Ok(None)
    }

    /// Gives every other key of `key`'s multi-Region set the new material version
    /// `material` of `key` (re-wrapped with each key's ARN), so the set keeps opening what
    /// any of them seals. Nothing for a single-Region key.
    pub(crate) fn share_material(
        &self,
        tx: &mut dyn WriteTxn,
        key: &KeyRecord,
        material: &Material,
    ) -> Result<(), KmsError> {
        let Some(set) = &key.multi_region else { return Ok(()) };
        let unwrapped = self.unwrap_for(&key.arn, material)?;
        let others = std::iter::once(&set.primary_region)
            .chain(&set.replica_regions)
            .filter(|r| **r != key.scope.region);
        for region in others {
            if let Some(mut member) = self.member(tx, key, region)? {
                let context = material_context(&member.arn, material.version);
                let wrapped = self.master_key().wrap_key(&unwrapped, &context);
                member
                    .materials
                    .push(Material { wrapped: STANDARD.encode(wrapped), ..material.clone() });
                save_key(tx, &member)?;
            }
        }
        Ok(())
    }

    /// Removes a deleted key's region from the rest of its multi-Region set.
    /// A primary waiting for its replicas' deletion (PendingReplicaDeletion) starts its
    /// own waiting period when the last one is gone.
    pub(crate) fn leave_set(
        &self,
        tx: &mut dyn WriteTxn,
        key: &KeyRecord,
        now: Millis,
    ) -> Result<(), KmsError> {
        let Some(set) = &key.multi_region else { return Ok(()) };
        let region = &key.scope.region;
        let others: Vec<String> = std::iter::once(&set.primary_region)
            .chain(&set.replica_regions)
            .filter(|r| *r != region)
            .cloned()
            .collect();
        let replica_regions =
            set.replica_regions.iter().filter(|r| *r != region).cloned().collect();
        let remaining = MultiRegion { primary_region: set.primary_region.clone(), replica_regions };
        for other in others {
            if let Some(mut member) = self.member(tx, key, &other)? {
                member.multi_region = Some(remaining.clone());
                if member.state == KeyState::PendingReplicaDeletion
                    && remaining.replica_regions.is_empty()
                {
                    let days = i64::from(member.pending_window_days.unwrap_or(30));
                    member.state = KeyState::PendingDeletion;
                    member.deletion_ms = Some(now + days * coffer_core::model::DAY_MS);
                }
                save_key(tx, &member)?;
            }
        }
        Ok(())
    }
}
