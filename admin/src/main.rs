//! Operator CLI: manages tables, accounts, systems, API clients and signing keys, locally or
//! on AWS, configured by the same environment as the functions (`source .dev/env` locally).

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use auth::AuthConfig;
use auth::{ClientSecret, keys};
use domain::{AccountId, ClientId, ScopeSet, SystemGuid};
use store::StoreError;
use store::Tables;
use store::dynamo::DynamoStore;

#[derive(Parser)]
#[command(name = "admin", about = "Operate the end-user data ingestion API")]
struct Cli {
    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Tables.
    Tables {
        #[command(subcommand)]
        command: TablesCmd,
    },
    /// Accounts (tenants).
    Account {
        #[command(subcommand)]
        command: AccountCmd,
    },
    /// Systems of an account (segments live in a system).
    System {
        #[command(subcommand)]
        command: SystemCmd,
    },
    /// OAuth2 API clients.
    Client {
        #[command(subcommand)]
        command: ClientCmd,
    },
    /// Token signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCmd,
    },
    /// Usage of an account per client and UTC day: calls, users updated, segment ids processed.
    Usage {
        #[arg(long)]
        account: String,
        /// First day, YYYY-MM-DD (default: today, UTC).
        #[arg(long)]
        from: Option<String>,
        /// Last day, YYYY-MM-DD (default: `--from`). At most 366 days.
        #[arg(long)]
        to: Option<String>,
    },
}

#[derive(Subcommand)]
enum TablesCmd {
    /// Create every table that does not exist yet (idempotent).
    Create,
}

#[derive(Subcommand)]
enum AccountCmd {
    Create {
        account_id: String,
        /// Most attributes the account may hold across all its integrations.
        #[arg(long, default_value_t = 100)]
        attribute_limit: i64,
        /// Requests per second the account may make (with a burst of the same size).
        #[arg(long, default_value_t = 100)]
        rate_limit: i64,
    },
    /// Set how long an erased user stays suppressed (every write refused), in days.
    Suppression {
        account_id: String,
        #[arg(long)]
        suppression_days: i64,
    },
    /// The account's erase records: when, which client, how many users, items, memberships.
    Erasures { account_id: String },
}

#[derive(Subcommand)]
enum SystemCmd {
    Create {
        #[arg(long)]
        account: String,
        /// Use this GUID instead of a new one.
        #[arg(long)]
        guid: Option<String>,
    },
}

#[derive(Subcommand)]
enum ClientCmd {
    /// Create a client; its secret is shown once.
    Create {
        #[arg(long)]
        account: String,
        /// Space-separated scopes, e.g. "endUserUpdate:write segments:write"; "all" for every one.
        #[arg(long)]
        scopes: String,
        #[arg(long, default_value = "")]
        name: String,
    },
    List {
        #[arg(long)]
        account: String,
    },
    /// Issue a new secret; the old one stops working at once, its tokens within a minute.
    RotateSecret { client_id: String },
    /// Refuse every further token request of this client; its tokens stop within a minute.
    Disable { client_id: String },
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Publish a new signing key now; it signs once every cache of the JWKS holds it (the
    /// output says when). Old keys keep verifying until their tokens expire.
    Rotate {
        /// How long the previous keys stay published after the new key takes over (default:
        /// token lifetime + 10 minutes).
        #[arg(long)]
        retire_after: Option<i64>,
    },
    /// Emergency: stop trusting a (compromised) key within a minute. Tokens it signed stop
    /// verifying; if it is the current key, a new one is made current first.
    Revoke {
        /// A key id is base64url and may begin with `-`: taken as the id, not as an option.
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let sdk = boot::aws_sdk_config().await;
    let store = DynamoStore::new(store::dynamodb_client(&sdk), Tables::from_env());
    match run(&store, cli.command).await {
        Ok((value, text)) => {
            if cli.json {
                println!("{value}");
            } else {
                println!("{text}");
            }
        }
        Err(message) => {
            if cli.json {
                println!("{}", json!({ "error": message }));
            } else {
                eprintln!("error: {message}");
            }
            std::process::exit(1);
        }
    }
}

type Outcome = Result<(Value, String), String>;

fn store_err(e: StoreError) -> String {
    e.to_string()
}

fn account_id(s: &str) -> Result<AccountId, String> {
    AccountId::parse(s).map_err(|e| e.to_string())
}

async fn run(store: &DynamoStore, command: Command) -> Outcome {
    let now = domain::Timestamp::now().epoch_secs();
    match command {
        Command::Tables { command: TablesCmd::Create } => {
            let created = store.create_tables().await.map_err(store_err)?;
            let all: Vec<String> = store.tables().named().iter().map(|(_, n)| n.to_string()).collect();
            let text = format!("tables ready: {} (created now: {})", all.join(", "), created.len());
            Ok((json!({ "tables": all, "created": created }), text))
        }
        Command::Account { command: AccountCmd::Create { account_id: id, attribute_limit, rate_limit } } => {
            if attribute_limit < 1 || rate_limit < 1 {
                return Err("--attribute-limit and --rate-limit must be at least 1".into());
            }
            let most = domain::integration::MAX_ATTRIBUTE_LIMIT;
            if attribute_limit > most {
                return Err(format!("--attribute-limit may be at most {most}"));
            }
            let id = account_id(&id)?;
            let rec = store.create_account(&id, attribute_limit, rate_limit, now).await.map_err(store_err)?;
            let text = format!("account {} created", rec.account_id);
            Ok((serde_json::to_value(rec).expect("serializable"), text))
        }
        Command::Account { command: AccountCmd::Suppression { account_id: id, suppression_days } } => {
            if !(0..=3650).contains(&suppression_days) {
                return Err("--suppression-days must be 0 to 3650".into());
            }
            let id = account_id(&id)?;
            store.set_suppression_days(&id, suppression_days).await.map_err(store_err)?;
            Ok((
                json!({ "accountId": id.as_str(), "suppressionDays": suppression_days }),
                format!("account {id}: erased users stay suppressed {suppression_days} days"),
            ))
        }
        Command::Account { command: AccountCmd::Erasures { account_id: id } } => {
            let id = account_id(&id)?;
            let records = store.erasures(&id).await.map_err(store_err)?;
            let text = records
                .iter()
                .map(|r| {
                    format!(
                        "{} client {} users {} items {} memberships {}",
                        r.at_ms, r.client_id, r.users, r.items, r.memberships
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            Ok((json!({ "accountId": id.as_str(), "erasures": records }), text))
        }
        Command::System { command: SystemCmd::Create { account, guid } } => {
            let account = account_id(&account)?;
            let guid = match guid {
                Some(g) => SystemGuid::parse(&g).map_err(|e| e.to_string())?,
                None => SystemGuid::generate(),
            };
            store.create_system(&account, guid, now).await.map_err(store_err)?;
            Ok((
                json!({ "systemGuid": guid.to_string(), "accountId": account.as_str() }),
                format!("system {guid} created"),
            ))
        }
        Command::Client { command } => client(store, command, now).await,
        Command::Usage { account, from, to } => usage(store, &account_id(&account)?, from, to).await,
        Command::Keys { command: KeysCmd::Rotate { retire_after } } => {
            let retire = retire_after.unwrap_or(AuthConfig::from_env().token_ttl_secs + 600);
            let signing = store.current_signing_key(now).await.map_err(store_err)?;
            let (kid, active_from) = rotate(store, now, keys::ACTIVATION_LEAD_SECS, retire).await?;
            let when = domain::clock::rfc3339_of_epoch_secs(active_from);
            let text = match &signing {
                Some(old) if active_from > now => format!(
                    "signing key {kid} is published now and signs from {when} (in {} s); until then {} signs",
                    active_from - now,
                    old.kid
                ),
                _ => format!("signing key {kid} is published and signs now (the first key)"),
            };
            Ok((
                json!({
                    "kid": kid,
                    "publishedAt": domain::clock::rfc3339_of_epoch_secs(now),
                    "signsFrom": when,
                    "signsInSeconds": active_from - now,
                    "signingUntilThen": signing.filter(|_| active_from > now).map(|k| k.kid),
                    "previousKeysRetireAfterSeconds": retire,
                }),
                text,
            ))
        }
        Command::Keys { command: KeysCmd::Revoke { kid } } => {
            let current = store.current_signing_key(now).await.map_err(store_err)?;
            let mut text = String::new();
            let mut replaced_by = None;
            if current.is_some_and(|c| c.kid == kid) {
                // A compromised key must stop signing now, even if some verifiers' cached JWKS
                // lacks its successor for a few minutes.
                let (new, _) = rotate(store, now, 0, AuthConfig::from_env().token_ttl_secs + 600).await?;
                text = format!("signing key {new} is published and signs now; ");
                replaced_by = Some(new);
            }
            store.revoke_signing_key(&kid).await.map_err(store_err)?;
            Ok((
                json!({ "revoked": kid, "current": replaced_by }),
                format!("{text}key {kid} revoked: its tokens stop verifying within a minute"),
            ))
        }
    }
}

/// A new key, published now and signing `lead` seconds later: its kid and when it signs.
async fn rotate(store: &DynamoStore, now: i64, lead: i64, retire: i64) -> Result<(String, i64), String> {
    let key = keys::generate().map_err(|e| e.to_string())?;
    let active_from = store
        .rotate_signing_key(&key.kid, &key.private_pem, &key.public_jwk, now, lead, retire)
        .await
        .map_err(store_err)?;
    Ok((key.kid, active_from))
}

async fn client(store: &DynamoStore, command: ClientCmd, now: i64) -> Outcome {
    let token_ttl = AuthConfig::from_env().longest_token_secs();
    match command {
        ClientCmd::Create { account, scopes, name } => {
            let account = account_id(&account)?;
            let scopes = if scopes.trim() == "all" {
                ScopeSet::all()
            } else {
                ScopeSet::parse(&scopes).map_err(|e| e.to_string())?
            };
            if scopes.is_empty() {
                return Err("--scopes must name at least one scope".into());
            }
            let secret = ClientSecret::generate();
            let rec =
                store.create_client(&account, &name, scopes, secret.hash(), now).await.map_err(store_err)?;
            let value = json!({
                "clientId": rec.client_id.as_str(),
                "clientSecret": secret.expose(),
                "scopes": scopes.to_string(),
                "accountId": account.as_str(),
                "name": name,
            });
            let text = format!(
                "client created\n  clientId:     {}\n  clientSecret: {}   (shown once; only its hash is stored)\n  scopes:       {}",
                rec.client_id,
                secret.expose(),
                scopes
            );
            Ok((value, text))
        }
        ClientCmd::List { account } => {
            let account = account_id(&account)?;
            let clients = store.list_clients(&account).await.map_err(store_err)?;
            let list: Vec<Value> = clients
                .iter()
                .map(|c| {
                    json!({
                        "clientId": c.client_id.as_str(),
                        "name": c.name,
                        "scopes": c.scopes.to_string(),
                        "disabled": c.disabled,
                        "createdAt": c.created_at,
                    })
                })
                .collect();
            let text = clients
                .iter()
                .map(|c| {
                    format!(
                        "{}  {}  [{}]{}",
                        c.client_id,
                        c.name,
                        c.scopes,
                        if c.disabled { "  (disabled)" } else { "" }
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            Ok((json!({ "accountId": account.as_str(), "clients": list }), text))
        }
        ClientCmd::RotateSecret { client_id } => {
            let id = ClientId::parse(&client_id).map_err(|e| e.to_string())?;
            let secret = ClientSecret::generate();
            store.rotate_client_secret(&id, &secret.hash(), now, token_ttl).await.map_err(store_err)?;
            Ok((
                json!({ "clientId": id.as_str(), "clientSecret": secret.expose() }),
                format!("new secret for {id}: {}   (shown once)", secret.expose()),
            ))
        }
        ClientCmd::Disable { client_id } => {
            let id = ClientId::parse(&client_id).map_err(|e| e.to_string())?;
            store.disable_client(&id, now, token_ttl).await.map_err(store_err)?;
            Ok((json!({ "clientId": id.as_str(), "disabled": true }), format!("client {id} disabled")))
        }
    }
}

fn parse_day(s: &str) -> Result<time::Date, String> {
    time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|_| format!("'{s}' is not a date of the form YYYY-MM-DD"))
}

async fn usage(
    store: &DynamoStore,
    account: &AccountId,
    from: Option<String>,
    to: Option<String>,
) -> Outcome {
    let today = time::OffsetDateTime::now_utc().date();
    let first = from.as_deref().map(parse_day).transpose()?.unwrap_or(today);
    let last = to.as_deref().map(parse_day).transpose()?.unwrap_or(first);
    if last < first || (last - first).whole_days() > 365 {
        return Err("--to must be on or after --from, and at most 366 days later".into());
    }
    let mut days = Vec::new();
    let mut d = first;
    while d <= last {
        days.push(format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()));
        d = d.next_day().ok_or("date out of range")?;
    }
    let rows = store.usage(account, &days).await.map_err(store_err)?;
    let (mut calls, mut users, mut ids) = (0, 0, 0);
    let mut text = format!(
        "usage of {account}, {} to {}\nday         client                            calls  users  segmentIds\n",
        days[0],
        days[days.len() - 1]
    );
    let list: Vec<Value> = rows
        .iter()
        .map(|(day, client, u)| {
            calls += u.calls;
            users += u.users_updated;
            ids += u.segment_ids;
            text.push_str(&format!("{day}  {client:<32}  {:>5}  {:>5}  {:>10}\n", u.calls, u.users_updated, u.segment_ids));
            json!({ "day": day, "clientId": client, "calls": u.calls, "usersUpdated": u.users_updated, "segmentIds": u.segment_ids })
        })
        .collect();
    text.push_str(&format!("total       {:<32}  {calls:>5}  {users:>5}  {ids:>10}", ""));
    let value = json!({
        "accountId": account.as_str(), "from": days[0], "to": days[days.len() - 1], "usage": list,
        "total": { "calls": calls, "usersUpdated": users, "segmentIds": ids },
    });
    Ok((value, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_id_that_begins_with_a_hyphen_is_an_id() {
        let cli = Cli::try_parse_from(["admin", "keys", "revoke", "-igtP-ERi31AZwCPRSB2Dgp9Wbg"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Keys { command: KeysCmd::Revoke { kid } } if kid == "-igtP-ERi31AZwCPRSB2Dgp9Wbg"
        ));
    }
}
