//! PostgreSQL rotation as AWS's `SecretsManagerRDSPostgreSQLRotationSingleUser` and
//! `...MultiUser` templates do it: the new value is the current JSON with a new password
//! (and, alternating, the other of `user` / `user_clone`); setSecret changes the password
//! (`ALTER ROLE`) or creates the clone (`CREATE ROLE ... IN ROLE <current>`), logged in with
//! the current credentials (single user) or the master's (alternating); testSecret logs in
//! with the new ones. Statements are built by the server (`format('%I', '%L')`), so no name
//! or password is ever quoted here.

use serde_json::{Map, Value};
use std::time::Duration;
use tokio_postgres::NoTls;
use zeroize::Zeroizing;

/// How long a connection attempt to the protected database may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// PostgreSQL's longest identifier.
const MAX_NAME: usize = 63;

/// The connection fields of a PostgreSQL secret.
pub struct DbSecret {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: Zeroizing<String>,
    pub dbname: String,
    pub ssl: bool,
    pub masterarn: Option<String>,
}

impl std::fmt::Debug for DbSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbSecret")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

fn object(value: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice(value) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err("the secret value is not a JSON object".into()),
    }
}

impl DbSecret {
    /// Reads a secret value (the JSON text) as the templates do, with their errors.
    pub fn parse(value: &[u8]) -> Result<DbSecret, String> {
        let mut map = object(value)?;
        for key in ["engine", "host", "username", "password"] {
            if !map.contains_key(key) {
                return Err(format!("{key} key is missing from secret JSON"));
            }
        }
        let engine = map.get("engine").and_then(Value::as_str).unwrap_or_default();
        if engine != "postgres" && engine != "aurora-postgresql" {
            return Err(
                "Database engine must be set to 'postgres' in order to use this rotation lambda"
                    .into(),
            );
        }
        let text = |map: &Map<String, Value>, key: &str| {
            map.get(key).and_then(Value::as_str).map(str::to_owned)
        };
        let port = match map.get("port") {
            None => 5432,
            Some(Value::Number(n)) => {
                n.as_u64().and_then(|p| u16::try_from(p).ok()).ok_or("bad port")?
            }
            Some(Value::String(s)) => s.parse().map_err(|_| "bad port")?,
            Some(_) => return Err("bad port".into()),
        };
        let ssl = match map.get("ssl") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
            _ => false,
        };
        // The password leaves the map by move, into a zeroizing string.
        let password = match map.remove("password") {
            Some(Value::String(p)) => Zeroizing::new(p),
            _ => return Err("password key is missing from secret JSON".into()),
        };
        Ok(DbSecret {
            host: text(&map, "host").ok_or("host key is missing from secret JSON")?,
            port,
            username: text(&map, "username").ok_or("username key is missing from secret JSON")?,
            password,
            dbname: text(&map, "dbname").unwrap_or_else(|| "postgres".into()),
            ssl,
            masterarn: text(&map, "masterarn"),
        })
    }
}

/// The alternate user of alternating-users rotation: `user` <-> `user_clone`.
pub fn alternate_user(username: &str) -> Result<String, String> {
    match username.strip_suffix("_clone") {
        Some(base) => Ok(base.to_string()),
        None if username.len() + 6 > MAX_NAME => Err(
            "Unable to clone user, username length with _clone appended would exceed 63 characters"
                .into(),
        ),
        None => Ok(format!("{username}_clone")),
    }
}

/// The pending value: the current JSON with `password` (and `username`, when alternating)
/// replaced; every other key kept.
pub fn pending_value(
    current: &[u8],
    username: Option<&str>,
    password: &str,
) -> Result<Vec<u8>, String> {
    DbSecret::parse(current)?;
    let mut map = object(current)?;
    if let Some(user) = username {
        map.insert("username".into(), user.into());
    }
    map.insert("password".into(), password.into());
    serde_json::to_vec(&Value::Object(map)).map_err(|e| e.to_string())
}

async fn connect(secret: &DbSecret) -> Result<tokio_postgres::Client, String> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&secret.host)
        .port(secret.port)
        .user(&secret.username)
        .password(secret.password.as_bytes())
        .dbname(&secret.dbname)
        .connect_timeout(CONNECT_TIMEOUT);
    let failed = |e: tokio_postgres::Error| {
        format!("cannot log in to {}:{} as {}: {e}", secret.host, secret.port, secret.username)
    };
    if secret.ssl {
        // As the templates: verify the server against the system's roots.
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        let tls =
            rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        let (client, conn) = config
            .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
            .await
            .map_err(failed)?;
        tokio::spawn(conn);
        Ok(client)
    } else {
        let (client, conn) = config.connect(NoTls).await.map_err(failed)?;
        tokio::spawn(conn);
        Ok(client)
    }
}

/// testSecret: logs in and runs `SELECT NOW()`.
pub async fn test_login(secret: &DbSecret) -> Result<(), String> {
    let client = connect(secret).await?;
    client.simple_query("SELECT NOW()").await.map_err(|e| e.to_string())?;
    Ok(())
}

/// Runs a statement the server builds from `template` (`%I` name, `%L` literal) and `args`.
async fn run_formatted(
    client: &tokio_postgres::Client,
    template: &str,
    args: &[&str],
) -> Result<(), String> {
    let params: Vec<String> = (1..=args.len()).map(|i| format!("${i}::text")).collect();
    let query = format!("SELECT format('{template}', {})", params.join(", "));
    let sql_args: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        args.iter().map(|a| a as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
    let row = client.query_one(&query, &sql_args).await.map_err(|e| e.to_string())?;
    let statement = Zeroizing::new(row.get::<_, String>(0));
    client.batch_execute(&statement).await.map_err(|e| e.to_string())
}

/// setSecret of single-user rotation: the pending password is set on the user, logged in
/// as the user with the current password (or the previous one).
pub async fn set_single_user(
    current: &DbSecret,
    previous: Option<&DbSecret>,
    pending: &DbSecret,
) -> Result<(), String> {
    if test_login(pending).await.is_ok() {
        return Ok(()); // already set (a step run again)
    }
    if pending.username != current.username {
        return Err("Attempting to modify user other than current user".into());
    }
    if pending.host != current.host {
        return Err("Attempting to modify user for host other than current host".into());
    }
    if pending.port != current.port {
        return Err("Attempting to modify user for port other than current port".into());
    }
    let client = match connect(current).await {
        Ok(c) => c,
        Err(e) => match previous {
            // The previous credentials are the ones whoever wrote the current value may not
            // be able to read: they are used only on the very server and user the pending
            // value names, or a value pointed at another server would have them change the
            // real user's password to one its author already saw (review finding 04).
            Some(p)
                if p.host == pending.host
                    && p.port == pending.port
                    && p.username == pending.username =>
            {
                connect(p).await.map_err(|_| e)?
            }
            Some(_) => {
                return Err(
                    "Previous secret does not match the pending secret's host, port and user"
                        .into(),
                );
            }
            None => return Err(e),
        },
    };
    run_formatted(
        &client,
        "ALTER ROLE %I WITH PASSWORD %L",
        &[&pending.username, &pending.password],
    )
    .await
}

/// setSecret of alternating-users rotation: logged in as the master, creates the alternate
/// user as a member of the current one (`CREATE ROLE ... IN ROLE`), or sets its password.
/// The current credentials must log in: whoever wrote the secret knows that role.
pub async fn set_alternating(
    current: &DbSecret,
    pending: &DbSecret,
    master: &DbSecret,
) -> Result<(), String> {
    if test_login(pending).await.is_ok() {
        return Ok(());
    }
    test_login(current).await?;
    // Only the current user's alternate, as AWS's templates: the master's session could
    // otherwise set any role's password (the master's own included) to one the author of
    // the pending value chose, though that author may not read the master secret.
    let alternate = alternate_user(&current.username)?;
    if pending.username != alternate {
        return Err(format!(
            "Attempting to modify user {} other than current user or clone {}",
            pending.username, current.username
        ));
    }
    if master.host != current.host || master.port != current.port {
        return Err("Master database host does not match the current secret's host".into());
    }
    if pending.host != current.host {
        return Err("Attempting to modify user for host other than current host".into());
    }
    let master_db =
        DbSecret { dbname: current.dbname.clone(), masterarn: None, ..clone_secret(master) };
    let client = connect(&master_db).await?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&pending.username])
        .await
        .map_err(|e| e.to_string())?
        .is_some();
    if exists {
        run_formatted(
            &client,
            "ALTER ROLE %I WITH PASSWORD %L",
            &[&pending.username, &pending.password],
        )
        .await
    } else {
        run_formatted(
            &client,
            "CREATE ROLE %I WITH LOGIN PASSWORD %L IN ROLE %I",
            &[&pending.username, &pending.password, &current.username],
        )
        .await
    }
}

fn clone_secret(s: &DbSecret) -> DbSecret {
    DbSecret {
        host: s.host.clone(),
        port: s.port,
        username: s.username.clone(),
        password: s.password.clone(),
        dbname: s.dbname.clone(),
        ssl: s.ssl,
        masterarn: s.masterarn.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_store::testing::TestPostgres;

    #[test]
    fn values_are_read_and_written_with_the_templates_keys() {
        let v = br#"{"engine":"postgres","host":"h","username":"u","password":"p","port":"6432","ssl":"true","extra":1}"#;
        let s = DbSecret::parse(v).unwrap();
        assert_eq!((s.port, s.ssl, s.dbname.as_str()), (6432, true, "postgres"));
        let pending = pending_value(v, Some("u_clone"), "new").unwrap();
        let m: Value = serde_json::from_slice(&pending).unwrap();
        assert_eq!(
            (m["username"].as_str(), m["password"].as_str(), m["extra"].as_i64()),
            (Some("u_clone"), Some("new"), Some(1))
        );
        assert_eq!(
            DbSecret::parse(br#"{"engine":"mysql","host":"h","username":"u","password":"p"}"#)
                .unwrap_err(),
            "Database engine must be set to 'postgres' in order to use this rotation lambda"
        );
        assert_eq!(
            DbSecret::parse(br#"{"engine":"postgres","host":"h","username":"u"}"#).unwrap_err(),
            "password key is missing from secret JSON"
        );
        assert_eq!(alternate_user("app").unwrap(), "app_clone");
        assert_eq!(alternate_user("app_clone").unwrap(), "app");
        assert!(alternate_user(&"a".repeat(60)).is_err());
    }

    /// The roles the tests make, which must log in with their password.
    const ROLES: &str = "rot_single,rot_app,rot_app_clone,rot_master";

    /// A throwaway server whose test roles must log in with their password (the test
    /// server trusts everyone else, `postgres` included).
    fn server_with_passwords() -> TestPostgres {
        let pg = TestPostgres::start();
        let hba = pg.admin_query("SHOW hba_file")[0][0].clone().unwrap();
        let text = std::fs::read_to_string(&hba).unwrap();
        let line = format!(
            "host all {ROLES} 127.0.0.1/32 scram-sha-256\nhost all {ROLES} ::1/128 scram-sha-256\n"
        );
        std::fs::write(&hba, format!("{line}{text}")).unwrap();
        pg.admin_query("SELECT pg_reload_conf()");
        pg
    }

    fn secret(pg: &TestPostgres, user: &str, password: &str) -> DbSecret {
        DbSecret {
            host: "127.0.0.1".into(),
            port: pg.port(),
            username: user.into(),
            password: Zeroizing::new(password.into()),
            dbname: "postgres".into(),
            ssl: false,
            masterarn: None,
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn single_user_rotation_changes_the_password_on_the_database() {
        let pg = tokio::task::spawn_blocking(server_with_passwords).await.unwrap();
        pg.admin_query("CREATE ROLE rot_single LOGIN PASSWORD 'old-pass''q'");
        let current = secret(&pg, "rot_single", "old-pass'q");
        test_login(&current).await.unwrap();
        assert!(test_login(&secret(&pg, "rot_single", "wrong")).await.is_err());
        let pending = secret(&pg, "rot_single", "new-pass\"$1");
        set_single_user(&current, None, &pending).await.unwrap();
        test_login(&pending).await.unwrap();
        assert!(test_login(&current).await.is_err(), "the old password must no longer log in");
        // Run again (a retried step): nothing to do.
        set_single_user(&current, None, &pending).await.unwrap();
        tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn single_user_rotation_never_uses_previous_credentials_for_another_server() {
        let pg = tokio::task::spawn_blocking(server_with_passwords).await.unwrap();
        pg.admin_query("CREATE ROLE rot_single LOGIN PASSWORD 'real-pass'");
        let previous = secret(&pg, "rot_single", "real-pass");
        // Whoever can write the value (but not read it) points the current and pending
        // values at a server of their own, here a port nobody listens on.
        let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = elsewhere.local_addr().unwrap().port();
        drop(elsewhere);
        let current = DbSecret { port, ..secret(&pg, "rot_single", "anything") };
        let pending = DbSecret { port, ..secret(&pg, "rot_single", "attacker-knows-this") };
        let refused = set_single_user(&current, Some(&previous), &pending).await.unwrap_err();
        assert!(refused.contains("does not match"), "{refused}");
        test_login(&previous).await.expect("the real password must be unchanged");
        tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn alternating_users_rotation_creates_the_clone_in_the_current_role() {
        let pg = tokio::task::spawn_blocking(server_with_passwords).await.unwrap();
        pg.admin_query("CREATE ROLE rot_master LOGIN CREATEROLE PASSWORD 'master-pass'");
        pg.admin_query("CREATE ROLE rot_app LOGIN PASSWORD 'app-pass'");
        pg.admin_query("GRANT rot_app TO rot_master WITH ADMIN OPTION");
        let master = secret(&pg, "rot_master", "master-pass");
        let current = secret(&pg, "rot_app", "app-pass");
        let pending = secret(&pg, "rot_app_clone", "clone-pass");
        // A current password that does not log in is refused.
        assert!(
            set_alternating(&secret(&pg, "rot_app", "guess"), &pending, &master).await.is_err()
        );
        set_alternating(&current, &pending, &master).await.unwrap();
        test_login(&pending).await.unwrap();
        test_login(&current).await.unwrap();
        let member = pg.admin_query(
            "SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member \
             WHERE r.rolname = 'rot_app' AND u.rolname = 'rot_app_clone'",
        );
        assert_eq!(member.len(), 1);
        // The next rotation sets the other user's password.
        let again = secret(&pg, "rot_app", "app-pass-2");
        set_alternating(&pending, &again, &master).await.unwrap();
        test_login(&again).await.unwrap();
        test_login(&pending).await.unwrap();
        tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
    }

    /// Whoever may write the secret's value but not read the master secret (attack13
    /// finding 01) names, as the pending user, the master itself: the rotator, logged in
    /// as the master, must not set that role's password to one its author chose. AWS's
    /// templates allow only the current user's alternate (`get_alt_username`).
    #[tokio::test(flavor = "multi_thread")]
    async fn alternating_users_rotation_changes_only_the_current_users_alternate() {
        let pg = tokio::task::spawn_blocking(server_with_passwords).await.unwrap();
        pg.admin_query("CREATE ROLE rot_master LOGIN CREATEROLE PASSWORD 'master-pass'");
        pg.admin_query("CREATE ROLE rot_app LOGIN PASSWORD 'app-pass'");
        pg.admin_query("GRANT rot_app TO rot_master WITH ADMIN OPTION");
        let master = secret(&pg, "rot_master", "master-pass");
        let current = secret(&pg, "rot_app", "app-pass");
        for victim in ["rot_master", "rot_app"] {
            let pending = secret(&pg, victim, "attacker-knows-this");
            let refused = set_alternating(&current, &pending, &master).await.unwrap_err();
            assert!(refused.contains("other than current user or clone"), "{refused}");
        }
        test_login(&master).await.expect("the master's password must be unchanged");
        test_login(&current).await.expect("the current password must be unchanged");
        tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
    }
}
