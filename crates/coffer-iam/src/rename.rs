//! UpdateUser, UpdateGroup, UpdateRole and UpdateRoleDescription: renaming a user or a
//! group, or moving it to another path, and changing a role's description or maximum
//! session duration.
//!
//! A user or group is stored under its name, and other records name it, so a rename
//! moves them all in one transaction: the user's record and its access keys (their
//! secrets re-sealed, since a secret is bound to its user's name), the member lists of its
//! groups, and its GetSessionToken sessions (bound to the unique id, which stays); a
//! group's record and the group lists of its members. The unique id does not change, so
//! resource, key and trust policies (which name principals by unique id once stored)
//! keep matching the renamed user and show its new ARN, as on AWS; identity policies that
//! name the old ARN as a resource are left as they are, as IAM leaves them.

use crate::directory::{
    Entity, GROUP_KIND, GroupRecord, RoleRecord, check_max_session, load_entity, put, records_in,
    validate_description, validate_name, validate_path,
};
use crate::{
    ACCESS_KEY_KIND, AccessKeyRecord, BOUND_SEAL, Iam, IamError, USER_KIND, UserRecord, encode,
    keys_of, load_user, no_such_user, seal_secret, user_key,
};
use coffer_store::{Store, WriteTxn};

/// What UpdateUser and UpdateGroup may change: each `None` leaves it as it is.
#[derive(Debug, Default, Clone, Copy)]
pub struct NewNameAndPath<'a> {
    pub name: Option<&'a str>,
    pub path: Option<&'a str>,
}

impl NewNameAndPath<'_> {
    /// Checks what is given as IAM does: the new name as the member `name_member`, at
    /// most `max_name` characters, and the path.
    fn validate(&self, name_member: &str, max_name: usize) -> Result<(), IamError> {
        if let Some(n) = self.name {
            validate_name(n, name_member, max_name)?;
        }
        if let Some(p) = self.path {
            validate_path(p)?;
        }
        Ok(())
    }
}

/// What UpdateRole may change: each `None` leaves it as it is.
#[derive(Debug, Default, Clone, Copy)]
pub struct RoleChanges<'a> {
    pub description: Option<&'a str>,
    pub max_session_secs: Option<i64>,
}

impl Iam {
    /// UpdateUser: renames the user and/or moves it to another path, with everything
    /// that names it, in one transaction.
    pub fn update_user(
        &self,
        store: &dyn Store,
        account: &str,
        name: &str,
        new: NewNameAndPath<'_>,
    ) -> Result<(), IamError> {
        new.validate("newUserName", 64)?;
        self.write(store, |tx| {
            let old = load_user(tx, account, name)?.ok_or_else(|| no_such_user(account, name))?;
            let mut user = old.clone();
            if let Some(p) = new.path {
                user.path = p.to_string();
            }
            let Some(new_name) = new.name.filter(|n| *n != name) else {
                tx.put_record(USER_KIND, &user_key(account, name), &encode(&user))?;
                return Ok(());
            };
            refuse_taken_name(tx, Entity::User, account, name, new_name)?;
            user.name = new_name.to_string();
            self.reseal_keys_for(tx, &old, &user)?;
            for group in &user.groups {
                let Some(mut g) = load_entity::<GroupRecord>(tx, Entity::Group, account, group)?
                else {
                    continue;
                };
                g.members.remove(name);
                g.members.insert(new_name.to_string());
                put(tx, GROUP_KIND, account, group, &g)?;
            }
            crate::sessions::rename_user_sessions(tx, account, &user.user_id, new_name)?;
            tx.delete_record(USER_KIND, &user_key(account, name))?;
            tx.put_record(USER_KIND, &user_key(account, new_name), &encode(&user))?;
            Ok(())
        })
    }

    /// Moves `old`'s access keys to `new` (the same user renamed): each secret is opened
    /// with the name it was bound to and sealed again bound to the new one.
    fn reseal_keys_for(
        &self,
        tx: &mut dyn WriteTxn,
        old: &UserRecord,
        new: &UserRecord,
    ) -> Result<(), IamError> {
        use base64::Engine;
        for mut key in keys_of(tx, &old.account, &old.name)? {
            let id = key.access_key_id.clone();
            let sealed =
                base64::engine::general_purpose::STANDARD.decode(&key.sealed_secret).map_err(
                    |_| IamError::Crypto(format!("access key {id} holds no readable secret")),
                )?;
            let aad = crate::bound_secret_aad(&old.account, &old.name, &old.user_id, &id);
            let opened =
                coffer_crypto::open(&self.credentials_key, &sealed, &aad).map_err(|e| {
                    IamError::Crypto(format!("cannot open the secret of access key {id}: {e}"))
                })?;
            key.sealed_secret = seal_secret(&self.credentials_key, new, &id, opened.expose());
            key.seal_version = BOUND_SEAL;
            key.user_name = new.name.clone();
            tx.put_record(ACCESS_KEY_KIND, &id, &encode::<AccessKeyRecord>(&key))?;
        }
        Ok(())
    }

    /// UpdateGroup: renames the group and/or moves it to another path; its members'
    /// group lists follow, in the same transaction.
    pub fn update_group(
        &self,
        store: &dyn Store,
        account: &str,
        name: &str,
        new: NewNameAndPath<'_>,
    ) -> Result<(), IamError> {
        new.validate("newGroupName", 128)?;
        self.write(store, |tx| {
            let mut group: GroupRecord = load_entity(tx, Entity::Group, account, name)?
                .ok_or_else(|| Entity::Group.not_found(name))?;
            if let Some(p) = new.path {
                group.path = p.to_string();
            }
            let Some(new_name) = new.name.filter(|n| *n != name) else {
                put(tx, GROUP_KIND, account, name, &group)?;
                return Ok(());
            };
            refuse_taken_name(tx, Entity::Group, account, name, new_name)?;
            group.name = new_name.to_string();
            for member in &group.members {
                let Some(mut u) = load_user(tx, account, member)? else { continue };
                u.groups.remove(name);
                u.groups.insert(new_name.to_string());
                tx.put_record(USER_KIND, &user_key(account, member), &encode(&u))?;
            }
            tx.delete_record(GROUP_KIND, &user_key(account, name))?;
            put(tx, GROUP_KIND, account, new_name, &group)?;
            Ok(())
        })
    }

    /// UpdateRole and UpdateRoleDescription: the role as it is afterwards.
    pub fn update_role(
        &self,
        store: &dyn Store,
        account: &str,
        name: &str,
        changes: RoleChanges<'_>,
    ) -> Result<RoleRecord, IamError> {
        if let Some(d) = changes.description {
            validate_description(d)?;
        }
        if let Some(secs) = changes.max_session_secs {
            check_max_session(secs)?;
        }
        self.write(store, |tx| {
            let mut role: RoleRecord = load_entity(tx, Entity::Role, account, name)?
                .ok_or_else(|| Entity::Role.not_found(name))?;
            if let Some(d) = changes.description {
                role.description = d.to_string();
            }
            if let Some(secs) = changes.max_session_secs {
                role.max_session_secs = secs;
            }
            put(tx, crate::directory::ROLE_KIND, account, name, &role)?;
            Ok(role)
        })
    }
}

/// IAM names are unique in an account without regard to case: `new_name` may be taken
/// only by the entity being renamed (a change of case).
fn refuse_taken_name(
    tx: &dyn coffer_store::ReadTxn,
    entity: Entity,
    account: &str,
    name: &str,
    new_name: &str,
) -> Result<(), IamError> {
    let names: Vec<String> = match entity {
        Entity::User => {
            records_in::<UserRecord>(tx, USER_KIND, account)?.into_iter().map(|u| u.name).collect()
        }
        Entity::Group => records_in::<GroupRecord>(tx, GROUP_KIND, account)?
            .into_iter()
            .map(|g| g.name)
            .collect(),
        Entity::Role => Vec::new(),
    };
    if names.iter().any(|n| n != name && n.eq_ignore_ascii_case(new_name)) {
        return Err(entity.exists(new_name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_crypto::MasterKey;
    use coffer_store::MemoryStore;

    const ACCOUNT: &str = "111122223333";

    #[test]
    fn a_renamed_users_key_opens_and_names_the_new_user_only() {
        let store = MemoryStore::new();
        let iam = Iam::open(&MasterKey::generate(), &store).unwrap();
        iam.create_user(&store, ACCOUNT, "bob", 1).unwrap();
        let (id, secret) = iam.create_access_key(&store, ACCOUNT, "bob", 2).unwrap();
        iam.create_group(&store, ACCOUNT, "team", "/", 3).unwrap();
        iam.set_membership(&store, ACCOUNT, "team", "bob", true).unwrap();
        let new = NewNameAndPath { name: Some("robert"), path: Some("/x/") };
        iam.update_user(&store, ACCOUNT, "bob", new).unwrap();
        let known = iam.lookup(&store, &id).unwrap().expect("the key still authenticates");
        assert_eq!(known.secret().expose(), secret.expose());
        assert_eq!(known.caller.principal.arn, format!("arn:aws:iam::{ACCOUNT}:user/x/robert"));
        assert!(matches!(iam.get_user(&store, ACCOUNT, "bob"), Err(IamError::NotFound(_))));
        let (_, members) = iam.get_group(&store, ACCOUNT, "team").unwrap();
        assert_eq!(members.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["robert"]);
        // A user made again under the old name is another user: the key is not theirs.
        iam.create_user(&store, ACCOUNT, "bob", 4).unwrap();
        assert!(iam.access_keys_of(&store, ACCOUNT, "bob").unwrap().is_empty());
    }
}
