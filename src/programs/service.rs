//! Program rules: parsing documents (JSON or YAML), saving them (validated and compiled first, one
//! default per org, audited, with an event), the default program of every org, and resolving the
//! compiled program of a store through the cache.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::cache::ProgramCache;
use super::engine::CompiledProgram;
use super::model::{ProgramDoc, ProgramError, ProgramId};
use super::store::{self, PROGRAMS_PER_ORG_MAX, ProgramHead, ProgramRow};
use crate::audit::{self, AuditActor, Change};
use crate::auth::Principal;
use crate::db::{Connection, Db, DbError, Tx};
use crate::events::{self, NewEvent};
use crate::org::model::OrgId;

/// The format of a program document file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocumentFormat {
    Json,
    Yaml,
    /// JSON if it parses as JSON, else YAML.
    Detect,
}

impl DocumentFormat {
    /// The format a file name implies (`.json`, `.yaml`/`.yml`), else [`DocumentFormat::Detect`].
    pub fn from_path(path: &std::path::Path) -> DocumentFormat {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("json") => DocumentFormat::Json,
            Some("yaml" | "yml") => DocumentFormat::Yaml,
            _ => DocumentFormat::Detect,
        }
    }
}

/// Parses a program document; a bad value names its field (`tiers[1].upgrade.atLeast`).
pub fn parse_document(text: &str, format: DocumentFormat) -> Result<ProgramDoc, ProgramError> {
    match format {
        DocumentFormat::Json => parse_json(text),
        DocumentFormat::Yaml => parse_yaml(text),
        DocumentFormat::Detect => match serde_json::from_str::<Value>(text) {
            Ok(_) => parse_json(text),
            Err(_) => parse_yaml(text),
        },
    }
}

fn parse_json(text: &str) -> Result<ProgramDoc, ProgramError> {
    let deserializer = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ProgramError::invalid("document", format!("malformed JSON: {inner}"))
        } else {
            ProgramError::invalid(path, inner.to_string())
        }
    })
}

fn parse_yaml(text: &str) -> Result<ProgramDoc, ProgramError> {
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // serde_yaml_ng starts its message with the path it knows; ours is the full one.
        let message = match message.split_once(": ") {
            Some((prefix, rest)) if path.starts_with(prefix) => rest.to_string(),
            _ => message,
        };
        ProgramError::invalid(path, message)
    })
}

/// The org's default program, inserting [`ProgramDoc::starter`] as it when the org has no program
/// at all. Safe to call at any time (also concurrently: the name is unique per org).
pub async fn ensure_default_program(tx: &mut Tx, org: OrgId) -> Result<ProgramId, DbError> {
    store::lock_org_programs(tx, org).await?;
    let heads = store::program_heads(tx, org).await?;
    if let Some(head) = heads.iter().find(|h| h.is_default).or(heads.first()) {
        return Ok(ProgramId(head.id));
    }
    let starter = ProgramDoc::starter();
    let document = serde_json::to_string(&starter).unwrap_or_default();
    match store::insert_program_if_absent(tx, org, &starter.name, &document).await? {
        Some(id) => {
            store::set_default_program(tx, org, id).await?;
            Ok(id)
        }
        None => {
            let row = store::find_program_by_name(tx, org, &starter.name).await?;
            Ok(ProgramId(row.map(|r| r.id).unwrap_or_default()))
        }
    }
}

// ---------------------------------------------------------------- resolution (bill time)

/// The compiled program of the org that covers `store_id`: the program whose store list holds the
/// store (the lowest id if several do), else the default one.
pub async fn program_for_store(
    cache: &ProgramCache,
    conn: &mut impl Connection,
    org: OrgId,
    store_id: i64,
) -> Result<CompiledProgram, ProgramError> {
    let heads = store::program_heads(conn, org).await?;
    if heads.is_empty() {
        return Err(ProgramError::NoProgram);
    }
    let mut programs = Vec::with_capacity(heads.len());
    for head in &heads {
        programs.push((head.is_default, load(cache, conn, org, head).await?));
    }
    if let Some((_, p)) = programs.iter().find(|(_, p)| p.store_ids.contains(&store_id)) {
        return Ok(p.clone());
    }
    let default = programs.iter().position(|(d, _)| *d).unwrap_or(0);
    Ok(programs.swap_remove(default).1)
}

/// The org's compiled program `id`.
pub async fn program_by_id(
    cache: &ProgramCache,
    conn: &mut impl Connection,
    org: OrgId,
    id: ProgramId,
) -> Result<CompiledProgram, ProgramError> {
    let heads = store::program_heads(conn, org).await?;
    let head = heads.iter().find(|h| h.id == id.0).ok_or(ProgramError::NotFound)?;
    load(cache, conn, org, head).await
}

/// Every compiled program of the org, by id.
pub async fn programs_of_org(
    cache: &ProgramCache,
    conn: &mut impl Connection,
    org: OrgId,
) -> Result<Vec<CompiledProgram>, ProgramError> {
    let heads = store::program_heads(conn, org).await?;
    let mut programs = Vec::with_capacity(heads.len());
    for head in &heads {
        programs.push(load(cache, conn, org, head).await?);
    }
    Ok(programs)
}

/// The cached compiled program of `head`, or the stored document loaded and compiled.
async fn load(
    cache: &ProgramCache,
    conn: &mut impl Connection,
    org: OrgId,
    head: &ProgramHead,
) -> Result<CompiledProgram, ProgramError> {
    if let Some(program) = cache.get(head.id, head.version, head.is_default) {
        return Ok(program);
    }
    let row =
        store::get_program(conn, org, ProgramId(head.id)).await?.ok_or(ProgramError::NotFound)?;
    let program = compile_row(conn, org, &row).await.inspect_err(|e| {
        tracing::error!(org = org.0, program = row.id, error = %e, "stored program does not compile");
    })?;
    cache.put(program.clone(), row.is_default);
    Ok(program)
}

/// Compiles a stored program. Store codes that no longer exist are left out (with a warning):
/// the document was checked when saved, and a renamed store must not stop every bill.
async fn compile_row(
    conn: &mut impl Connection,
    org: OrgId,
    row: &ProgramRow,
) -> Result<CompiledProgram, ProgramError> {
    let mut doc = parse_document(&row.document, DocumentFormat::Json)?;
    doc.default = row.is_default;
    let store_ids = resolve_stores(conn, org, &doc, false).await?;
    CompiledProgram::compile(ProgramId(row.id), row.version, doc, store_ids)
}

/// The ids of the document's store codes; `strict` refuses unknown codes (at save time).
async fn resolve_stores(
    conn: &mut impl Connection,
    org: OrgId,
    doc: &ProgramDoc,
    strict: bool,
) -> Result<Vec<i64>, ProgramError> {
    if doc.stores.is_empty() {
        return Ok(Vec::new());
    }
    let found: HashMap<String, i64> = store::store_ids_by_code(conn, org, &doc.stores)
        .await?
        .into_iter()
        .map(|(id, code)| (code, id))
        .collect();
    let mut ids = Vec::with_capacity(doc.stores.len());
    for (i, code) in doc.stores.iter().enumerate() {
        match found.get(code) {
            Some(id) => ids.push(*id),
            None if strict => {
                return Err(ProgramError::invalid(
                    format!("stores[{i}]"),
                    format!("no store with code '{code}' in this org"),
                ));
            }
            None => tracing::warn!(org = org.0, store = %code, "program store code not found"),
        }
    }
    Ok(ids)
}

// ---------------------------------------------------------------- admin (save time)

/// A saved program: its id and new version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SavedProgram {
    pub id: ProgramId,
    pub version: i64,
    pub created: bool,
}

/// Which program a save writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveTarget {
    /// A new program (its name must be free in the org).
    New,
    /// Replace program `id`.
    Replace(ProgramId),
    /// Replace the org's program with the document's name, or create it (`perks program apply`).
    ByName,
}

/// The org's programs by id.
pub async fn list_programs(db: &Db, org: OrgId) -> Result<Vec<ProgramRow>, ProgramError> {
    let mut conn = db.read().await?;
    Ok(store::list_programs(&mut conn, org).await?)
}

/// The org's program `id`.
pub async fn get_program(db: &Db, org: OrgId, id: ProgramId) -> Result<ProgramRow, ProgramError> {
    let mut conn = db.read().await?;
    store::get_program(&mut conn, org, id).await?.ok_or(ProgramError::NotFound)
}

/// Validates and compiles `doc`, then creates or replaces a program in one transaction with its
/// audit record and event (`program.created` / `program.updated`). A document with
/// `"default": true` becomes the org's one default; the org's first program is default anyway;
/// the current default stays default until another program takes over.
#[tracing::instrument(skip_all, fields(org = org.0))]
pub async fn save_program(
    db: &Db,
    cache: &ProgramCache,
    org: OrgId,
    principal: Option<&Principal>,
    target: SaveTarget,
    mut doc: ProgramDoc,
) -> Result<SavedProgram, ProgramError> {
    doc.name = doc.name.trim().to_string();
    let mut tx = db.begin_write().await?;
    store::lock_org_programs(&mut tx, org).await?;
    let existing = match target {
        SaveTarget::New => None,
        SaveTarget::Replace(id) => {
            Some(store::get_program(&mut tx, org, id).await?.ok_or(ProgramError::NotFound)?)
        }
        SaveTarget::ByName => store::find_program_by_name(&mut tx, org, &doc.name).await?,
    };
    let others = store::list_programs(&mut tx, org).await?;
    let others: Vec<&ProgramRow> =
        others.iter().filter(|r| existing.as_ref().is_none_or(|e| e.id != r.id)).collect();
    if others.iter().any(|r| r.name == doc.name) {
        return Err(ProgramError::NameTaken(doc.name));
    }
    if existing.is_none() && others.len() >= usize::try_from(PROGRAMS_PER_ORG_MAX).unwrap_or(0) {
        return Err(ProgramError::invalid(
            "name",
            format!("an org may hold at most {PROGRAMS_PER_ORG_MAX} programs"),
        ));
    }
    let was_default = existing.as_ref().is_some_and(|e| e.is_default);
    if was_default && !doc.default {
        return Err(ProgramError::invalid(
            "default",
            "this is the org's default program: make another program the default instead",
        ));
    }
    let is_default = doc.default || others.is_empty();
    doc.default = is_default;
    check_store_overlap(&doc, &others)?;
    let store_ids = resolve_stores(&mut tx, org, &doc, true).await?;
    let version = existing.as_ref().map(|e| e.version + 1).unwrap_or(1);
    let id = existing.as_ref().map(|e| ProgramId(e.id)).unwrap_or(ProgramId(0));
    // Compiling is the validation: nothing is written unless every expression compiles.
    let compiled = CompiledProgram::compile(id, version, doc, store_ids)?;
    let doc = &compiled.doc;
    for (i, rule) in doc.earn.iter().enumerate() {
        if let Some(name) = &rule.currency
            && crate::currencies::service::for_award(&mut tx, org, name).await?.is_none()
        {
            return Err(ProgramError::UnknownCurrency {
                field: format!("earn[{i}].currency"),
                name: name.clone(),
            });
        }
    }
    let document = serde_json::to_string(doc.as_ref()).unwrap_or_default();

    let (id, version) = match &existing {
        Some(row) => {
            let version =
                store::update_program(&mut tx, org, ProgramId(row.id), &doc.name, &document)
                    .await?
                    .ok_or(ProgramError::NotFound)?;
            (ProgramId(row.id), version)
        }
        None => (store::insert_program(&mut tx, org, &doc.name, &document).await?, 1),
    };
    if is_default && !was_default {
        store::set_default_program(&mut tx, org, id).await?;
    }
    let actor = principal.map(AuditActor::from).unwrap_or_else(AuditActor::system);
    let after = json!({"name": doc.name, "version": version, "default": is_default,
        "document": serde_json::to_value(doc.as_ref()).unwrap_or(Value::Null)});
    let before = existing.as_ref().map(|row| {
        json!({"name": row.name, "version": row.version, "default": row.is_default,
            "document": serde_json::from_str::<Value>(&row.document).unwrap_or(Value::Null)})
    });
    let (action, event_type) = match existing {
        Some(_) => ("UPDATE", "program.updated"),
        None => ("CREATE", "program.created"),
    };
    let change =
        Change { entity_type: "PROGRAM", entity_id: id.0, action, before, after: Some(after) };
    audit::record(&mut tx, org, &actor, change).await?;
    let payload = json!({"id": id.0, "name": doc.name, "version": version, "default": is_default});
    let event = NewEvent { event_type, entity_type: "PROGRAM", entity_id: id.0, payload };
    events::raise(&mut tx, org, principal, event).await?;
    tx.commit().await?;
    cache.invalidate(id.0);
    Ok(SavedProgram { id, version, created: action == "CREATE" })
}

/// A store may belong to one program only (a bill earns in exactly one program).
fn check_store_overlap(doc: &ProgramDoc, others: &[&ProgramRow]) -> Result<(), ProgramError> {
    if doc.stores.is_empty() {
        return Ok(());
    }
    for other in others {
        let Ok(other_doc) = parse_document(&other.document, DocumentFormat::Json) else {
            continue;
        };
        if let Some(i) = doc.stores.iter().position(|code| other_doc.stores.contains(code)) {
            return Err(ProgramError::invalid(
                format!("stores[{i}]"),
                format!("store '{}' already belongs to program '{}'", doc.stores[i], other.name),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_yaml_errors_name_the_field() {
        let e = parse_document(
            r#"{"name": "x", "tiers": [{"name": "a"}, {"name": "b", "upgrade": {"metric": "lifetimePurchases", "atLeast": "lots"}}]}"#,
            DocumentFormat::Json,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("tiers[1].upgrade.atLeast: "), "{e}");
        let e = parse_document(
            "name: x\ntiers:\n  - name: a\n    colour: red\n",
            DocumentFormat::Detect,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("tiers[0].colour: unknown field `colour`"), "{e}");
        let e = parse_document("{\"name\": ", DocumentFormat::Json).unwrap_err();
        assert!(e.to_string().starts_with("document: malformed JSON"), "{e}");
        let doc =
            parse_document("name: y\ntiers: [{name: Base}]\n", DocumentFormat::Detect).unwrap();
        assert_eq!(doc.name, "y");
    }
}
