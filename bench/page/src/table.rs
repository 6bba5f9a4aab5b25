//! A 1,000-row table in the real DOM, updated through the state manager and
//! through plain Leptos signals.
//!
//! Both tables show a label per row and update every 10th row per round;
//! each is written the way its tool is meant to be used:
//!
//! - signals: one `RwSignal<String>` per row, 100 `set`s per round;
//! - state: one apartment key holding every label (`Vec<String>`), each row
//!   watching its own index with `use_state_path`, one
//!   [`set_items`](StateManager::set_items) of the 100 changed rows per
//!   round (the list changes in place);
//! - state-whole: the same key and rows, one read-modify-write per round
//!   (`get` + `set` of the whole list, what `StateSetter::update` does).
//!
//! A round is timed from the first write until the last changed row shows
//! its new text in the DOM (Leptos 0.8 renders in effects, so the loop
//! yields to the executor until it does).

use std::any::Any;

use gaesup_state::prelude::*;
use gaesup_state::{SharedKey, StateManager};
use leptos::prelude::*;
use leptos::task::tick;
use serde_json::json;
use wasm_bindgen::prelude::*;

use crate::fixture::{address, js, key, now, report, stage, text_of};

/// One round of writes (the round number goes into the labels).
type Writer = Box<dyn Fn(u32) -> Result<(), JsValue>>;

/// Builds the table of `kind` (`"signals"`, `"state"` or `"state-whole"`)
/// with `rows` rows,
/// then runs `rounds` update rounds: `{create_ms, update_ms: [..],
/// write_ms: [..], ticks}` (`write_ms`: the writes alone, notifications
/// included, before anything renders).
#[wasm_bindgen]
pub async fn table_bench(kind: String, rows: u32, rounds: u32) -> Result<String, JsValue> {
    let parent = stage()?;
    let owner = Owner::new();
    let changed: Vec<usize> = (0..rows as usize).step_by(10).collect();
    let last = *changed.last().ok_or_else(|| js("no rows"))?;
    let probe = format!("#t tr:nth-child({}) td:nth-child(2)", last + 1);
    let labels = |round: u32| -> Vec<String> {
        (0..rows as usize)
            .map(|i| {
                if i % 10 == 0 && round > 0 {
                    format!("row {i} round {round}")
                } else {
                    format!("row {i}")
                }
            })
            .collect()
    };

    let start = now();
    let (handle, write): (Box<dyn Any>, Writer) = match kind.as_str() {
        "signals" => owner.with(|| {
            let cells: Vec<RwSignal<String>> = labels(0).into_iter().map(RwSignal::new).collect();
            let view_cells = cells.clone();
            let handle = leptos::mount::mount_to(parent, move || {
                view! { <SignalTable cells=view_cells /> }
            });
            let changed = changed.clone();
            let write = move |round: u32| {
                for &i in &changed {
                    cells[i].set(format!("row {i} round {round}"));
                }
                Ok(())
            };
            Ok::<_, JsValue>((Box::new(handle) as Box<dyn Any>, Box::new(write) as Writer))
        })?,
        "state" | "state-whole" => owner.with(|| {
            let manager = StateManager::with_system_clock();
            let unit = address("table")?;
            let table: SharedKey<Vec<String>> = key("rows", gaesup_state::Lifetime::Memory)?;
            manager.declare(&table).map_err(js)?;
            manager.set(&unit, &table, labels(0)).map_err(js)?;
            let view_key = table.clone();
            let handle = leptos::mount::mount_to(parent, move || {
                view! {
                    <Apartment id="table" manager=manager>
                        <Building id="b">
                            <Unit id="u">
                                <StateTable table=view_key rows=rows />
                            </Unit>
                        </Building>
                    </Apartment>
                }
            });
            let changed = changed.clone();
            let whole = kind == "state-whole";
            let write = move |round: u32| {
                if whole {
                    let mut next = manager.get(&unit, &table).map_err(js)?;
                    for &i in &changed {
                        next[i] = format!("row {i} round {round}");
                    }
                    manager.set(&unit, &table, next).map_err(js)?;
                } else {
                    let items = changed
                        .iter()
                        .map(|&i| (i, format!("row {i} round {round}")));
                    manager.set_items(&unit, &table, items).map_err(js)?;
                }
                Ok(())
            };
            Ok::<_, JsValue>((Box::new(handle) as Box<dyn Any>, Box::new(write) as Writer))
        })?,
        other => return Err(js(format!("unknown table kind {other:?}"))),
    };
    let create_ms = now() - start;
    if text_of(&probe).as_deref() != Some(&format!("row {last}")) {
        return Err(js(format!("{kind}: the table did not render")));
    }

    let mut update_ms = Vec::new();
    let mut write_ms = Vec::new();
    let mut ticks = 0_u32;
    for round in 1..=rounds {
        let expected = format!("row {last} round {round}");
        let start = now();
        write(round)?;
        write_ms.push(now() - start);
        let mut waited = 0;
        while text_of(&probe).as_deref() != Some(expected.as_str()) {
            if waited == 1_000 {
                return Err(js(format!("{kind}: round {round} never rendered")));
            }
            tick().await;
            waited += 1;
        }
        update_ms.push(now() - start);
        ticks += waited;
    }
    drop(handle);
    owner.cleanup();
    Ok(report(json!({
        "create_ms": create_ms,
        "update_ms": update_ms,
        "write_ms": write_ms,
        "ticks": ticks,
    })))
}

/// Rows reading one signal each.
#[component]
fn SignalTable(cells: Vec<RwSignal<String>>) -> impl IntoView {
    view! {
        <table id="t">
            {cells
                .into_iter()
                .enumerate()
                .map(|(i, cell)| view! { <tr><td>{i}</td><td>{cell}</td></tr> })
                .collect_view()}
        </table>
    }
}

/// Rows watching their own index of one shared key.
#[component]
fn StateTable(table: SharedKey<Vec<String>>, rows: u32) -> impl IntoView {
    view! {
        <table id="t">
            {(0..rows as usize)
                .map(|i| {
                    let cell = use_state_path::<Vec<String>, String>(&table, &i.to_string());
                    view! { <tr><td>{i}</td><td>{move || cell.value.get().unwrap_or_default()}</td></tr> }
                })
                .collect_view()}
        </table>
    }
}
