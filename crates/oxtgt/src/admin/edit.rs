//! Live edits as changes to the served config's TOML (what `to_toml` writes):
//! `[[lu]]` for named LUs, `[[target]]` with `lun` entries that are either
//! `{id, lu}` or an inline definition, and `acl` entries with a `map` table. The
//! result is validated by the config parser like a file, so an edit can never
//! produce a model a file could not.

use toml::{Table, Value};

use super::proto::LuSpec;

fn targets(t: &mut Table) -> Result<&mut Vec<Value>, String> {
    match t.get_mut("target") {
        Some(Value::Array(a)) => Ok(a),
        _ => Err("the served config has no targets".into()),
    }
}

fn target<'a>(t: &'a mut Table, name: &str) -> Result<&'a mut Table, String> {
    targets(t)?
        .iter_mut()
        .filter_map(Value::as_table_mut)
        .find(|x| x.get("name").and_then(Value::as_str) == Some(name))
        .ok_or_else(|| format!("no target {name:?}"))
}

fn array<'a>(t: &'a mut Table, key: &str) -> &'a mut Vec<Value> {
    let v = t
        .entry(key.to_owned())
        .or_insert_with(|| Value::Array(Vec::new()));
    if !v.is_array() {
        *v = Value::Array(Vec::new());
    }
    match v {
        Value::Array(a) => a,
        _ => unreachable!("made an array above"),
    }
}

fn name_of(target: &Table) -> String {
    target
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// A size as the config takes it: an integer of bytes, else a string like "1GiB".
fn size_value(size: &str) -> Value {
    match size.parse::<i64>() {
        Ok(n) => Value::Integer(n),
        Err(_) => Value::String(size.to_owned()),
    }
}

fn lun_id(v: &Value) -> Option<i64> {
    v.get("id").and_then(Value::as_integer)
}

/// The LU name of a target's `lun` entry: its `lu`, or `<target>/lun<id>` inline.
fn lu_name_of(target: &str, v: &Value) -> Option<String> {
    match v.get("lu").and_then(Value::as_str) {
        Some(n) => Some(n.to_owned()),
        None => lun_id(v).map(|id| format!("{target}/lun{id}")),
    }
}

fn spec_table(spec: &LuSpec) -> Table {
    let mut t = Table::new();
    t.insert("backstore".into(), Value::String(spec.backstore.clone()));
    if let Some(p) = &spec.path {
        t.insert("path".into(), Value::String(p.clone()));
    }
    if let Some(s) = &spec.size {
        t.insert("size".into(), size_value(s));
    }
    if let Some(b) = spec.block_size {
        t.insert("block_size".into(), Value::Integer(i64::from(b)));
    }
    if let Some(thin) = spec.thin {
        t.insert("thin".into(), Value::Boolean(thin));
    }
    if spec.read_only {
        t.insert("read_only".into(), Value::Boolean(true));
    }
    t
}

/// Adds an LU at `lun` of `target`: a named `[[lu]]` mapped there, or inline.
pub fn lu_add(t: &mut Table, tgt: &str, lun: u16, spec: &LuSpec) -> Result<(), String> {
    if target(t, tgt)?
        .get("lun")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|v| lun_id(v) == Some(i64::from(lun))))
    {
        return Err(format!("target {tgt} already has LUN {lun}"));
    }
    let mut def = spec_table(spec);
    match &spec.name {
        Some(name) => {
            if lu_exists(t, name) {
                return Err(format!(
                    "an LU named {name:?} exists already (map it instead)"
                ));
            }
            def.insert("name".into(), Value::String(name.clone()));
            array(t, "lu").push(Value::Table(def));
            let mut m = Table::new();
            m.insert("id".into(), Value::Integer(i64::from(lun)));
            m.insert("lu".into(), Value::String(name.clone()));
            array(target(t, tgt)?, "lun").push(Value::Table(m));
        }
        None => {
            def.insert("id".into(), Value::Integer(i64::from(lun)));
            array(target(t, tgt)?, "lun").push(Value::Table(def));
        }
    }
    Ok(())
}

fn lu_exists(t: &Table, name: &str) -> bool {
    let named = t.get("lu").and_then(Value::as_array).is_some_and(|a| {
        a.iter()
            .any(|l| l.get("name").and_then(Value::as_str) == Some(name))
    });
    let inline = t.get("target").and_then(Value::as_array).is_some_and(|ts| {
        ts.iter().any(|tg| {
            let tn = tg.get("name").and_then(Value::as_str).unwrap_or_default();
            tg.get("lun").and_then(Value::as_array).is_some_and(|ls| {
                ls.iter()
                    .any(|l| l.get("lu").is_none() && lu_name_of(tn, l).as_deref() == Some(name))
            })
        })
    });
    named || inline
}

/// Maps the named LU `lu` at `lun` of `target`.
pub fn lun_map(t: &mut Table, tgt: &str, lun: u16, lu: &str) -> Result<(), String> {
    let named = t.get("lu").and_then(Value::as_array).is_some_and(|a| {
        a.iter()
            .any(|l| l.get("name").and_then(Value::as_str) == Some(lu))
    });
    if !named {
        return Err(if lu_exists(t, lu) {
            format!("LU {lu:?} is defined inline in its target; only named LUs ([[lu]], or `lu add --name`) can be mapped into more places")
        } else {
            format!("no LU named {lu:?}")
        });
    }
    let tg = target(t, tgt)?;
    let luns = array(tg, "lun");
    if luns.iter().any(|v| lun_id(v) == Some(i64::from(lun))) {
        return Err(format!("target {tgt} already has LUN {lun}"));
    }
    let mut m = Table::new();
    m.insert("id".into(), Value::Integer(i64::from(lun)));
    m.insert("lu".into(), Value::String(lu.to_owned()));
    luns.push(Value::Table(m));
    Ok(())
}

/// Removes LUN `lun` from `target`, with the ACL entries that map it; a named LU
/// no target maps any more goes too. Returns the LU's name.
pub fn lun_unmap(t: &mut Table, tgt: &str, lun: u16) -> Result<String, String> {
    let tg = target(t, tgt)?;
    let luns = array(tg, "lun");
    let at = luns
        .iter()
        .position(|v| lun_id(v) == Some(i64::from(lun)))
        .ok_or_else(|| format!("target {tgt} has no LUN {lun}"))?;
    let gone = luns.remove(at);
    let name = lu_name_of(tgt, &gone).unwrap_or_default();
    unmap_in_acls(tg, i64::from(lun));
    drop_unmapped_named(t);
    Ok(name)
}

fn unmap_in_acls(tg: &mut Table, lun: i64) {
    for acl in array(tg, "acl").iter_mut().filter_map(Value::as_table_mut) {
        if let Some(Value::Table(map)) = acl.get_mut("map") {
            map.retain(|_, v| v.as_integer() != Some(lun));
        }
    }
}

fn drop_unmapped_named(t: &mut Table) {
    let mapped: Vec<String> = t
        .get("target")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|tg| {
            tg.get("lun")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(|l| l.get("lu").and_then(Value::as_str).map(str::to_owned))
        .collect();
    array(t, "lu").retain(|l| {
        l.get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| mapped.iter().any(|m| m == n))
    });
    if t.get("lu")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
    {
        t.remove("lu");
    }
}

/// Removes the LU `name` from every target that maps it (and their ACL entries
/// for it), and its definition.
pub fn lu_remove(t: &mut Table, name: &str) -> Result<(), String> {
    if !lu_exists(t, name) {
        return Err(format!("no LU named {name:?}"));
    }
    for tg in targets(t)?.iter_mut().filter_map(Value::as_table_mut) {
        let tn = name_of(tg);
        let luns = array(tg, "lun");
        let ids: Vec<i64> = luns
            .iter()
            .filter(|l| lu_name_of(&tn, l).as_deref() == Some(name))
            .filter_map(lun_id)
            .collect();
        luns.retain(|l| lu_name_of(&tn, l).as_deref() != Some(name));
        for id in ids {
            unmap_in_acls(tg, id);
        }
    }
    drop_unmapped_named(t);
    Ok(())
}

/// Sets the size of the LU `name` (the model grows it while served).
pub fn lu_resize(t: &mut Table, name: &str, size: &str) -> Result<(), String> {
    let value = size_value(size);
    for l in array(t, "lu").iter_mut().filter_map(Value::as_table_mut) {
        if l.get("name").and_then(Value::as_str) == Some(name) {
            l.insert("size".into(), value);
            return Ok(());
        }
    }
    for tg in targets(t)?.iter_mut().filter_map(Value::as_table_mut) {
        let tn = name_of(tg);
        for l in array(tg, "lun").iter_mut().filter_map(Value::as_table_mut) {
            let id = l.get("id").and_then(Value::as_integer);
            if l.get("lu").is_none() && id.map(|i| format!("{tn}/lun{i}")).as_deref() == Some(name)
            {
                l.insert("size".into(), value);
                return Ok(());
            }
        }
    }
    Err(format!("no LU named {name:?}"))
}

/// Gives `initiator` access to `target` with `map` (visible LUN → target LUN),
/// replacing its entry if it has one. The target stops being open access.
pub fn acl_add(
    t: &mut Table,
    tgt: &str,
    initiator: &str,
    map: &std::collections::BTreeMap<u16, u16>,
) -> Result<(), String> {
    let tg = target(t, tgt)?;
    if tg.get("open_access").and_then(Value::as_bool) == Some(true) {
        return Err(format!(
            "target {tgt} has open access; every initiator sees every LUN (set open_access = false in the config first)"
        ));
    }
    let mut m = Table::new();
    for (vis, lun) in map {
        m.insert(vis.to_string(), Value::Integer(i64::from(*lun)));
    }
    let acls = array(tg, "acl");
    match acls
        .iter_mut()
        .filter_map(Value::as_table_mut)
        .find(|a| a.get("initiator").and_then(Value::as_str) == Some(initiator))
    {
        Some(a) => {
            a.insert("map".into(), Value::Table(m));
        }
        None => {
            let mut a = Table::new();
            a.insert("initiator".into(), Value::String(initiator.to_owned()));
            a.insert("map".into(), Value::Table(m));
            acls.push(Value::Table(a));
        }
    }
    Ok(())
}

pub fn acl_remove(t: &mut Table, tgt: &str, initiator: &str) -> Result<(), String> {
    let acls = array(target(t, tgt)?, "acl");
    let before = acls.len();
    acls.retain(|a| a.get("initiator").and_then(Value::as_str) != Some(initiator));
    if acls.len() == before {
        return Err(format!("target {tgt} has no ACL entry for {initiator}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const BASE: &str = r#"
[[lu]]
name = "shared"
backstore = "ram"
size = "1MiB"
[[target]]
name = "iqn.2026-11.org.oxtgt:a"
[[target.lun]]
id = 0
lu = "shared"
[[target.lun]]
id = 1
backstore = "ram"
size = "1MiB"
[[target.acl]]
initiator = "iqn.1994-05.com.example:h1"
map = { 0 = 0, 1 = 1 }
"#;

    fn table() -> Table {
        let cfg = Config::parse("base", BASE).unwrap();
        toml::from_str(&cfg.to_toml().unwrap()).unwrap()
    }

    fn parse(t: &Table) -> Config {
        Config::parse("edited", &toml::to_string(t).unwrap()).unwrap_or_else(|e| panic!("{e}"))
    }

    const A: &str = "iqn.2026-11.org.oxtgt:a";

    #[test]
    fn unmapping_a_lun_drops_it_from_acls_and_the_last_mapping_drops_the_lu() {
        let mut t = table();
        assert_eq!(lun_unmap(&mut t, A, 0).unwrap(), "shared");
        let cfg = parse(&t);
        assert_eq!(cfg.targets[0].luns.len(), 1);
        assert_eq!(cfg.targets[0].acls[0].map.len(), 1);
        assert!(!toml::to_string(&t).unwrap().contains("shared"));
        assert!(lun_unmap(&mut t, A, 0).unwrap_err().contains("no LUN 0"));
    }

    #[test]
    fn an_added_named_lu_can_be_mapped_twice_and_removed_everywhere() {
        let mut t = table();
        let spec = LuSpec {
            name: Some("new".into()),
            backstore: "ram".into(),
            size: Some("2MiB".into()),
            ..LuSpec::default()
        };
        lu_add(&mut t, A, 5, &spec).unwrap();
        lun_map(&mut t, A, 6, "new").unwrap();
        assert!(lu_add(&mut t, A, 5, &spec)
            .unwrap_err()
            .contains("already has LUN 5"));
        let cfg = parse(&t);
        let new: Vec<_> = cfg.targets[0]
            .luns
            .iter()
            .filter(|l| l.lu == "new")
            .collect();
        assert_eq!(new.len(), 2);
        assert_eq!(new[0].size, Some(2 << 20));
        lu_remove(&mut t, "new").unwrap();
        assert!(parse(&t).targets[0].luns.iter().all(|l| l.lu != "new"));
    }

    #[test]
    fn inline_lus_resize_and_refuse_a_second_mapping() {
        let mut t = table();
        let inline = format!("{A}/lun1");
        lu_resize(&mut t, &inline, "4MiB").unwrap();
        assert_eq!(parse(&t).targets[0].luns[1].size, Some(4 << 20));
        assert!(lun_map(&mut t, A, 7, &inline)
            .unwrap_err()
            .contains("inline"));
        assert!(lu_resize(&mut t, "nope", "1MiB").is_err());
    }

    #[test]
    fn acl_entries_are_replaced_and_removed() {
        let mut t = table();
        let mut map = std::collections::BTreeMap::new();
        map.insert(3, 1);
        acl_add(&mut t, A, "iqn.1994-05.com.example:h1", &map).unwrap();
        acl_add(&mut t, A, "iqn.1994-05.com.example:h2", &map).unwrap();
        let cfg = parse(&t);
        assert_eq!(cfg.targets[0].acls.len(), 2);
        assert_eq!(cfg.targets[0].acls[0].map.get(&3), Some(&1));
        acl_remove(&mut t, A, "iqn.1994-05.com.example:h2").unwrap();
        assert!(acl_remove(&mut t, A, "iqn.1994-05.com.example:h2").is_err());
        assert_eq!(parse(&t).targets[0].acls.len(), 1);
    }
}
