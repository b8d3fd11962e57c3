//! Earn-rule expressions: CEL compiled once per program version, checked at save time, evaluated
//! at bill time.
//!
//! cel-rust has no type checker, so "type errors at save time" are found in two passes: a static
//! walk of the syntax tree (free variables allowed for the rule's trigger, attributes of the fixed
//! `bill`/`item`/`customer` schema, with their position) and a trial evaluation against a sample
//! bill, line item and customer whose fields all have their real types (wrong operand types,
//! unknown functions, a `when` that is not a bool, `points` that are not a number). Keys looked up
//! in `extendedFields`/`customFields` are org data and never rejected at save time.

use std::collections::HashSet;
use std::sync::Arc;

use cel::common::ast::{Expr, IdedExpr};
use cel::{Context, Env, ExecutionError, Program, Value};
use serde_json::Map;

use super::engine::{BillFacts, CustomerFacts, ItemFacts};
use super::model::{EarnTrigger, ProgramError};

/// Longest `when` or `points` expression, in bytes.
pub const EXPRESSION_LENGTH_MAX: usize = 4096;
/// Deepest nesting of brackets in an expression (the parser and evaluator recurse).
pub const EXPRESSION_NESTING_MAX: usize = 32;
/// Deepest syntax tree of an expression (e.g. a chain of 200 additions is 200 deep): evaluation
/// recurses once per level, and must stay well inside a worker thread's stack.
pub const EXPRESSION_DEPTH_MAX: usize = 100;

const BILL_FIELDS: &[&str] = &[
    "amount",
    "grossAmount",
    "discount",
    "billNumber",
    "billingDate",
    "source",
    "store",
    "extendedFields",
    "customFields",
    "lineItems",
];
const ITEM_FIELDS: &[&str] =
    &["itemCode", "qty", "rate", "value", "amount", "discount", "extendedFields", "customFields"];
const CUSTOMER_FIELDS: &[&str] = &[
    "id",
    "tier",
    "lifetimePurchases",
    "lifetimePoints",
    "points",
    "labels",
    "extendedFields",
    "customFields",
];
/// Maps whose keys are org data: any key may be looked up in them.
const OPEN_MAPS: &[&str] = &["extendedFields", "customFields"];
/// Identifiers CEL itself understands (type names), allowed anywhere.
const CEL_IDENTS: &[&str] = &[
    "bool",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "dyn",
];

/// What an expression must yield.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Yields {
    Bool,
    Number,
}

/// One compiled expression with what the static pass learned about it.
#[derive(Debug)]
pub struct CompiledExpr {
    program: Program,
    /// Keys this expression looks up in the open maps (`extendedFields`, `customFields`).
    open_keys: HashSet<String>,
    /// True when it indexes an open map with a computed key (any missing key is then org data).
    open_dynamic: bool,
}

/// The shared CEL environment (standard library), built once per compiled program.
pub fn environment() -> Arc<Env> {
    Arc::new(Env::stdlib())
}

fn variables_of(on: EarnTrigger) -> &'static [&'static str] {
    match on {
        EarnTrigger::Transaction => &["bill", "customer"],
        EarnTrigger::LineItem => &["bill", "item", "customer"],
        EarnTrigger::Registration => &["customer"],
    }
}

fn trigger_name(on: EarnTrigger) -> &'static str {
    match on {
        EarnTrigger::Transaction => "transaction",
        EarnTrigger::LineItem => "lineItem",
        EarnTrigger::Registration => "registration",
    }
}

/// 1-based line and column (in characters) of byte offset `at` in `source`.
fn line_column(source: &str, at: usize) -> (usize, usize) {
    let mut line = 1;
    let mut column = 1;
    for (i, c) in source.char_indices() {
        if i >= at {
            break;
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (line, column)
}

/// Compiles `source` and checks it statically and by trial evaluation; `field` names it in errors.
pub fn compile(
    field: &str,
    source: &str,
    on: EarnTrigger,
    yields: Yields,
    env: &Arc<Env>,
    sample: &Sample,
) -> Result<CompiledExpr, ProgramError> {
    if source.trim().is_empty() {
        return Err(ProgramError::invalid(field, "must not be empty"));
    }
    if source.len() > EXPRESSION_LENGTH_MAX {
        return Err(ProgramError::invalid(
            field,
            format!("must be at most {EXPRESSION_LENGTH_MAX} characters"),
        ));
    }
    check_nesting(field, source)?;
    let program = env.compile(source).map_err(|errors| {
        let reason = match errors.errors.first() {
            Some(e) => {
                // cel-rust reports 1-based lines and columns.
                let (line, column) = (e.pos.0.max(1), e.pos.1.max(1));
                format!("syntax error at line {line}, column {column}: {}", e.msg)
            }
            None => "syntax error".to_string(),
        };
        ProgramError::invalid(field, reason)
    })?;

    if depth(program.expression()) > EXPRESSION_DEPTH_MAX {
        return Err(ProgramError::invalid(
            field,
            format!(
                "more than {EXPRESSION_DEPTH_MAX} operations nested in one another: split the \
                 expression into several rules"
            ),
        ));
    }
    let mut walk = Walk {
        field,
        source,
        program: &program,
        on,
        bound: Vec::new(),
        open_keys: HashSet::new(),
        open_dynamic: false,
    };
    walk.expr(program.expression())?;
    let (open_keys, open_dynamic) = (walk.open_keys, walk.open_dynamic);
    let compiled = CompiledExpr { program, open_keys, open_dynamic };
    trial(field, &compiled, on, yields, env, sample)?;
    Ok(compiled)
}

/// Refuses deeply nested brackets before the (recursive) parser sees them.
fn check_nesting(field: &str, source: &str) -> Result<(), ProgramError> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in source.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' | '[' | '{' => {
                depth += 1;
                if depth > EXPRESSION_NESTING_MAX {
                    return Err(ProgramError::invalid(
                        field,
                        format!("brackets nested deeper than {EXPRESSION_NESTING_MAX}"),
                    ));
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The depth of a syntax tree, measured without recursion.
fn depth(root: &IdedExpr) -> usize {
    let mut deepest = 0;
    let mut pending: Vec<(&IdedExpr, usize)> = vec![(root, 1)];
    while let Some((e, d)) = pending.pop() {
        deepest = deepest.max(d);
        if d > EXPRESSION_DEPTH_MAX {
            break;
        }
        let next = d + 1;
        match &e.expr {
            Expr::Call(call) => {
                pending.extend(call.target.iter().map(|t| (t.as_ref(), next)));
                pending.extend(call.args.iter().map(|a| (a, next)));
            }
            Expr::Select(select) => pending.push((&select.operand, next)),
            Expr::Comprehension(c) => {
                for part in [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                    pending.push((part, next));
                }
            }
            Expr::List(list) => pending.extend(list.elements.iter().map(|x| (x, next))),
            Expr::Map(map) => {
                for entry in &map.entries {
                    if let cel::common::ast::EntryExpr::MapEntry(m) = &entry.expr {
                        pending.push((&m.key, next));
                        pending.push((&m.value, next));
                    }
                }
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    if let cel::common::ast::EntryExpr::StructField(f) = &entry.expr {
                        pending.push((&f.value, next));
                    }
                }
            }
            Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
    deepest
}

/// The static pass over the syntax tree.
struct Walk<'a> {
    field: &'a str,
    source: &'a str,
    program: &'a Program,
    on: EarnTrigger,
    /// Comprehension variables in scope.
    bound: Vec<String>,
    open_keys: HashSet<String>,
    open_dynamic: bool,
}

impl Walk<'_> {
    fn error_at(&self, id: u64, reason: String) -> ProgramError {
        let reason = match self.program.source_info().offset_for(id) {
            Some((start, _)) => {
                let (line, column) = line_column(self.source, start as usize);
                format!("{reason} at line {line}, column {column}")
            }
            None => reason,
        };
        ProgramError::invalid(self.field, reason)
    }

    fn is_free(&self, name: &str) -> bool {
        !self.bound.iter().any(|b| b == name)
    }

    fn expr(&mut self, e: &IdedExpr) -> Result<(), ProgramError> {
        match &e.expr {
            Expr::Ident(name) => self.ident(e.id, name),
            Expr::Select(select) => {
                self.schema_attribute(e.id, &select.operand, &select.field)?;
                self.open_key(&select.operand, Some(&select.field));
                self.expr(&select.operand)
            }
            Expr::Call(call) => {
                if call.func_name == "_[_]"
                    && let [target, key] = call.args.as_slice()
                {
                    let literal = match &key.expr {
                        Expr::Literal(cel::common::ast::LiteralValue::String(s)) => {
                            Some(s.inner().to_string())
                        }
                        _ => None,
                    };
                    if let Some(k) = &literal {
                        self.schema_attribute(e.id, target, k)?;
                    }
                    self.open_key(target, literal.as_deref());
                }
                if let Some(target) = &call.target {
                    self.expr(target)?;
                }
                call.args.iter().try_for_each(|a| self.expr(a))
            }
            Expr::Comprehension(c) => {
                self.expr(&c.iter_range)?;
                self.expr(&c.accu_init)?;
                let depth = self.bound.len();
                self.bound.push(c.iter_var.clone());
                if let Some(v2) = &c.iter_var2 {
                    self.bound.push(v2.clone());
                }
                self.bound.push(c.accu_var.clone());
                let result = self
                    .expr(&c.loop_cond)
                    .and_then(|()| self.expr(&c.loop_step))
                    .and_then(|()| self.expr(&c.result));
                self.bound.truncate(depth);
                result
            }
            Expr::List(list) => list.elements.iter().try_for_each(|x| self.expr(x)),
            Expr::Map(map) => map.entries.iter().try_for_each(|entry| self.entry(entry)),
            Expr::Struct(s) => s.entries.iter().try_for_each(|entry| self.entry(entry)),
            Expr::Literal(_) | Expr::Unspecified => Ok(()),
        }
    }

    fn entry(&mut self, entry: &cel::common::ast::IdedEntryExpr) -> Result<(), ProgramError> {
        match &entry.expr {
            cel::common::ast::EntryExpr::MapEntry(m) => {
                self.expr(&m.key)?;
                self.expr(&m.value)
            }
            cel::common::ast::EntryExpr::StructField(f) => self.expr(&f.value),
        }
    }

    fn ident(&mut self, id: u64, name: &str) -> Result<(), ProgramError> {
        if !self.is_free(name) || CEL_IDENTS.contains(&name) {
            return Ok(());
        }
        if variables_of(self.on).contains(&name) {
            return Ok(());
        }
        let reason = if ["bill", "item", "customer"].contains(&name) {
            format!("{} rules may not reference {name}", trigger_name(self.on))
        } else {
            format!("unknown variable '{name}'")
        };
        Err(self.error_at(id, reason))
    }

    /// `bill.x`, `item.x`, `customer.x` (or `bill['x']`) must name a field of the fixed schema.
    fn schema_attribute(
        &self,
        id: u64,
        operand: &IdedExpr,
        field: &str,
    ) -> Result<(), ProgramError> {
        let Expr::Ident(root) = &operand.expr else {
            return Ok(());
        };
        if !self.is_free(root) {
            return Ok(());
        }
        let fields = match root.as_str() {
            "bill" => BILL_FIELDS,
            "item" => ITEM_FIELDS,
            "customer" => CUSTOMER_FIELDS,
            _ => return Ok(()),
        };
        if fields.contains(&field) {
            Ok(())
        } else {
            Err(self.error_at(
                id,
                format!("unknown attribute '{field}' of {root} (known: {})", fields.join(", ")),
            ))
        }
    }

    /// Notes a lookup into an open map: `<…>.extendedFields.key` or `<…>.customFields[expr]`.
    fn open_key(&mut self, operand: &IdedExpr, key: Option<&str>) {
        if let Expr::Select(inner) = &operand.expr
            && OPEN_MAPS.contains(&inner.field.as_str())
        {
            match key {
                Some(k) => {
                    self.open_keys.insert(k.to_string());
                }
                None => self.open_dynamic = true,
            }
        }
    }
}

/// The sample facts of the trial evaluation: every field present, with its real type.
pub struct Sample {
    bill: Value,
    item: Value,
    customer: Value,
}

impl Sample {
    /// A sample bill with one line item, and a sample customer in tier `tier`.
    pub fn new(tier: &str) -> Result<Sample, ProgramError> {
        let item = ItemFacts {
            item_code: "SKU-1".into(),
            qty: 2.0,
            rate: 550.0,
            value: 1100.0,
            amount: 1000.0,
            discount: 100.0,
            extended_fields: Map::new(),
            custom_fields: Map::new(),
        };
        let bill = BillFacts {
            amount: 1000.0,
            gross_amount: 1100.0,
            discount: 100.0,
            bill_number: "1001".into(),
            billing_date: "2024-01-15T10:30:00+00:00".into(),
            source: "INSTORE".into(),
            store: "store1".into(),
            extended_fields: Map::new(),
            custom_fields: Map::new(),
            line_items: vec![item.clone()],
        };
        let customer = CustomerFacts {
            id: 1,
            tier: tier.to_string(),
            lifetime_purchases: 25000.0,
            lifetime_points: 2500.0,
            points: 500.0,
            labels: vec!["sample".into()],
            extended_fields: Map::new(),
            custom_fields: Map::new(),
        };
        Ok(Sample { bill: to_cel(&bill)?, item: to_cel(&item)?, customer: to_cel(&customer)? })
    }
}

/// Converts facts to a CEL value.
pub fn to_cel<T: serde::Serialize>(facts: &T) -> Result<Value, ProgramError> {
    cel::to_value(facts)
        .map_err(|e| ProgramError::invalid("facts", format!("cannot be converted: {e}")))
}

/// The variables of one evaluation, already converted to CEL values.
pub struct Facts<'a> {
    pub bill: Option<&'a Value>,
    pub item: Option<&'a Value>,
    pub customer: &'a Value,
}

impl CompiledExpr {
    /// Runs the expression over `facts`.
    pub fn execute(&self, env: &Arc<Env>, facts: &Facts<'_>) -> Result<Value, ExecutionError> {
        let mut context = Context::with_env(Arc::clone(env));
        if let Some(bill) = facts.bill {
            context.add_variable_from_value("bill", bill.clone());
        }
        if let Some(item) = facts.item {
            context.add_variable_from_value("item", item.clone());
        }
        context.add_variable_from_value("customer", facts.customer.clone());
        self.program.execute(&context)
    }

    /// True when `error` is a lookup of a key that is org data (extended or custom fields).
    fn is_open_key_miss(&self, error: &ExecutionError) -> bool {
        match error {
            ExecutionError::NoSuchKey(k) => {
                self.open_dynamic || self.open_keys.contains(k.as_str())
            }
            _ => false,
        }
    }
}

/// The CEL type name of a value, for messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::UInt(_) => "uint",
        Value::Float(_) => "double",
        Value::String(_) => "string",
        Value::Null => "null",
        Value::List(_) => "list",
        Value::Map(_) => "map",
        _ => "value",
    }
}

/// Evaluates the expression on the sample; refuses what is wrong whatever the data.
fn trial(
    field: &str,
    compiled: &CompiledExpr,
    on: EarnTrigger,
    yields: Yields,
    env: &Arc<Env>,
    sample: &Sample,
) -> Result<(), ProgramError> {
    let facts = Facts {
        bill: (on != EarnTrigger::Registration).then_some(&sample.bill),
        item: (on == EarnTrigger::LineItem).then_some(&sample.item),
        customer: &sample.customer,
    };
    match compiled.execute(env, &facts) {
        Ok(value) => {
            let fits = match yields {
                Yields::Bool => matches!(value, Value::Bool(_)),
                Yields::Number => matches!(value, Value::Int(_) | Value::UInt(_) | Value::Float(_)),
            };
            if fits {
                Ok(())
            } else {
                let want = match yields {
                    Yields::Bool => "a bool",
                    Yields::Number => "a number",
                };
                Err(ProgramError::invalid(
                    field,
                    format!("type error: must yield {want}, yields {}", type_name(&value)),
                ))
            }
        }
        Err(e) if compiled.is_open_key_miss(&e) => Ok(()),
        Err(ExecutionError::NoSuchKey(k)) => {
            Err(ProgramError::invalid(field, format!("unknown attribute '{k}'")))
        }
        Err(ExecutionError::UndeclaredReference(name)) => {
            Err(ProgramError::invalid(field, format!("unknown variable or function '{name}'")))
        }
        Err(
            e @ (ExecutionError::NoSuchOverload(_)
            | ExecutionError::UnexpectedType { .. }
            | ExecutionError::ValuesNotComparable(..)
            | ExecutionError::UnsupportedBinaryOperator(..)
            | ExecutionError::UnsupportedKeyType(_)
            | ExecutionError::NotSupportedAsMethod { .. }
            | ExecutionError::UnsupportedTargetType { .. }
            | ExecutionError::InvalidArgumentCount { .. }
            | ExecutionError::UnsupportedIndex(..)
            | ExecutionError::MissingArgumentOrTarget),
        ) => {
            let hint = match &e {
                ExecutionError::UnsupportedBinaryOperator(_, a, b)
                    if matches!(
                        (a, b),
                        (Value::Float(_), Value::Int(_) | Value::UInt(_))
                            | (Value::Int(_) | Value::UInt(_), Value::Float(_))
                    ) =>
                {
                    " (CEL does not mix int and double in arithmetic: amounts are doubles, so \
                     write 10.0 rather than 10, or convert with double(...) or int(...))"
                }
                _ => "",
            };
            Err(ProgramError::invalid(field, format!("type error: {e}{hint}")))
        }
        // Data-dependent failures (division by zero, overflow, index out of range, a failing
        // conversion) say nothing about the expression's type: the rule is checked again per bill.
        Err(_) => Ok(()),
    }
}
