//! `window.gaesup` in a real browser, driven from JavaScript.
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, reason = "tests: a failure should fail loudly")]

use gaesup_state::StateManager;
use gaesup_state::core::{ManualClock, TabId};
use gaesup_state::prelude::*;
use gaesup_state_web::install_js_binding;
use js_sys::Function;
use leptos::prelude::*;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// Runs JavaScript `body` (which returns a value) and gives back
/// `JSON.stringify` of its result.
fn js(body: &str) -> String {
    let function =
        Function::new_no_args(&format!("return JSON.stringify((() => {{ {body} }})());"));
    function.call0(&JsValue::NULL).unwrap().as_string().unwrap()
}

/// A manager for apartment `apartment`, published on `window.gaesup`.
fn install(apartment: &str) -> StateManager {
    let manager = StateManager::new(TabId::new(7), ManualClock::new(1_000));
    install_js_binding([(apartment.to_owned(), manager)]).unwrap();
    manager
}

#[wasm_bindgen_test]
fn get_set_subscribe_and_unsubscribe() {
    let owner = Owner::new();
    owner.with(|| {
        install("js1");
        let out = js(r#"
            const u = window.gaesup.unit('js1/b/el');
            u.declare('n', { scope: 'building', strategy: 'sum' });
            const seen = [];
            const stop = u.subscribe('n', (v) => seen.push(v));
            u.increment('n', 2);
            u.set('n', 5);
            stop();
            u.increment('n', 1);
            return { seen, now: u.get('n'), address: u.address };
        "#);
        assert_eq!(out, r#"{"seen":[2,5],"now":6,"address":"js1/b/el"}"#);
    });
}

#[wasm_bindgen_test]
fn js_and_rust_share_a_typed_key_and_the_type_is_enforced() {
    let owner = Owner::new();
    owner.with(|| {
        let manager = install("js2");
        let key = SharedKey::<i64>::builder("count")
            .scope(Scope::Building)
            .strategy(Strategy::Sum)
            .build()
            .unwrap();
        manager.declare(&key).unwrap();
        let rust_unit = "js2/b/rust".parse().unwrap();
        manager.increment(&rust_unit, &key, 3).unwrap();
        let out = js(r#"
            const u = window.gaesup.unit('js2/b/el');
            u.declare('count', { scope: 'building', strategy: 'sum' });
            const before = u.get('count');
            u.increment('count', 1);
            let code = null;
            try { u.set('count', 'many'); } catch (e) { code = e.code; }
            return { before, code };
        "#);
        assert_eq!(out, r#"{"before":3,"code":"type_mismatch"}"#);
        assert_eq!(manager.get(&rust_unit, &key).unwrap(), 4);
    });
}

#[wasm_bindgen_test]
fn errors_carry_stable_codes() {
    let owner = Owner::new();
    owner.with(|| {
        let manager = install("js3");
        let locked = SharedKey::<String>::builder("locked")
            .scope(Scope::Apartment)
            .write(Access::units(["owner"]).unwrap())
            .build()
            .unwrap();
        manager.declare(&locked).unwrap();
        let out = js(r#"
            const codes = [];
            const attempt = (f) => { try { f(); codes.push('ok'); } catch (e) { codes.push(e.code); } };
            attempt(() => window.gaesup.unit('nowhere/b/u'));
            attempt(() => window.gaesup.unit('../etc'));
            const u = window.gaesup.unit('js3/b/el');
            attempt(() => u.get('missing'));
            attempt(() => u.set('locked', 'mine'));
            u.declare('free', {});
            attempt(() => u.set('free', undefined));
            attempt(() => u.set('free', { fine: [1, 2] }));
            attempt(() => u.declare('locked', { scope: 'apartment', strategy: 'sum' }));
            attempt(() => u.increment('free', 0.5));
            return codes;
        "#);
        assert_eq!(
            out,
            r#"["unknown_apartment","invalid_name","unknown_key","permission_denied","bad_value","ok","key_mismatch","bad_value"]"#
        );
        // The refused delta shows as JavaScript writes the number.
        let messages = js(r#"
            const u = window.gaesup.unit('js3/b/el');
            u.declare('total', { strategy: 'sum' });
            return [0.5, 2 ** 60, -1e300].map((delta) => {
                try { u.increment('total', delta); return 'ok'; } catch (e) { return e.message; }
            });
        "#);
        for shown in ["0.5", "1152921504606847000", "-1e+300"] {
            assert!(
                messages.contains(&format!("increment {shown} is not a safe whole number")),
                "{messages}"
            );
        }
        // Options: a field this version does not know, or a value of the
        // wrong kind, is refused and named; `null` means the defaults.
        let options = js(r#"
            const u = window.gaesup.unit('js3/b/el');
            return [
                () => u.declare('o1', { scope: 'building', lifetme: 'memory' }),
                () => u.declare('o2', { lifetime: 'forever' }),
                () => u.declare('o3', null),
                () => u.declare('o4', { strategy: 'sum', lifetime: 'memory', default: 0 }),
                () => u.on('e', () => {}, { crossTab: 'yes' }),
                () => u.subscribe('o4', () => {}, { path: 'a', deep: true }),
                () => u.on('e', () => {}, { scope: 'building', crossTab: false }),
            ].map((f) => {
                try {
                    const stop = f();
                    if (typeof stop === 'function') stop();
                    return 'ok';
                } catch (e) {
                    return `${e.code}: ${e.message}`;
                }
            });
        "#);
        let said: Vec<String> = serde_json::from_str(&options).unwrap();
        let expected = [
            "bad_value: bad value: options: unknown field `lifetme`",
            "bad_value: bad value: options: unknown variant `forever`",
            "ok",
            "ok",
            "bad_value: bad value: options: invalid type: string \"yes\", expected a boolean",
            "bad_value: bad value: options: unknown field `deep`",
            "ok",
        ];
        assert_eq!(said.len(), expected.len(), "{options}");
        for (said, expected) in said.iter().zip(expected) {
            assert!(said.starts_with(expected), "{said} / {expected}");
        }
    });
}

#[wasm_bindgen_test]
fn events_reach_listeners_in_scope() {
    let owner = Owner::new();
    owner.with(|| {
        install("js4");
        let out = js(r#"
            const a = window.gaesup.unit('js4/lobby/a');
            const b = window.gaesup.unit('js4/lobby/b');
            const c = window.gaesup.unit('js4/shop/c');
            const got = [];
            const offB = b.on('ping', (data, from) => got.push(['b', data.n, from]), { scope: 'building' });
            const offC = c.on('ping', (data) => got.push(['c', data.n]), { scope: 'building' });
            a.emit('ping', { n: 1 }, { scope: 'building' });
            offB();
            a.emit('ping', { n: 2 }, { scope: 'building' });
            offC();
            return got;
        "#);
        assert_eq!(out, r#"[["b",1,"js4/lobby/a"]]"#);
    });
}

/// Two JavaScript units playing ping-pong: each answers every event it
/// hears. Each answer was delivered inside the emit that made it, until
/// the stack overflowed (a trap in the middle of the manager); now the
/// exchange is cut off after `MAX_CASCADE_DEPTH` answers, said in
/// `dropped`, and the manager goes on working.
#[wasm_bindgen_test]
fn units_answering_each_other_s_events_are_cut_off_not_overflowed() {
    let owner = Owner::new();
    owner.with(|| {
        let manager = install("js9");
        let out = js(r#"
            const a = window.gaesup.unit('js9/lobby/a');
            const b = window.gaesup.unit('js9/lobby/b');
            let heard = 0;
            a.on('ping', (data) => { heard += 1; a.emit('pong', { n: data.n + 1 }, { scope: 'building' }); }, { scope: 'building' });
            b.on('pong', (data) => { heard += 1; b.emit('ping', { n: data.n + 1 }, { scope: 'building' }); }, { scope: 'building' });
            a.emit('ping', { n: 0 }, { scope: 'building' });
            const first = heard;
            // Still working: another round is cut off the same way.
            a.emit('ping', { n: 0 }, { scope: 'building' });
            return [first, heard - first];
        "#);
        let rounds = 1 + gaesup_state::MAX_CASCADE_DEPTH;
        assert_eq!(out, format!("[{rounds},{rounds}]"));
        let dropped = manager.dropped();
        assert_eq!(dropped.len(), 2, "{dropped:?}");
        assert!(dropped[0].contains("kept emitting"), "{dropped:?}");
    });
}

/// One macrotask: every microtask queued before it (a batch flush) has run.
async fn next_task() {
    gloo_timers::future::TimeoutFuture::new(0).await;
}

fn shared(name: &str) -> SharedKey<i64> {
    SharedKey::<i64>::builder(name)
        .scope(Scope::Building)
        .lifetime(Lifetime::Ephemeral)
        .build()
        .unwrap()
}

#[wasm_bindgen_test]
async fn a_batch_subscription_hears_each_change_set_once() {
    let owner = Owner::new();
    let (here, there, a, b) = owner.with(|| {
        let here = install("js5");
        // Another tab: its writes reach this one as encoded messages.
        let there = StateManager::new(TabId::new(8), ManualClock::new(2_000));
        let (a, b) = (shared("a"), shared("b"));
        for manager in [here, there] {
            manager.declare(&a).unwrap();
            manager.declare(&b).unwrap();
        }
        js(r#"
            const u = window.gaesup.unit('js5/b/el');
            window.__calls = [];
            window.__stop = u.subscribeBatch(['a', 'b'], (changed) => window.__calls.push(changed));
            return null;
        "#);
        (here, there, a, b)
    });
    let unit: gaesup_state::UnitAddress = "js5/b/rust".parse().unwrap();
    let calls = || js("return window.__calls.splice(0);");

    // A batch written in this tab: one call with both keys.
    here.batch(|batch| {
        batch.set(&unit, &a, 1)?;
        batch.set(&unit, &b, 2)
    })
    .unwrap();
    next_task().await;
    assert_eq!(calls(), r#"[{"a":1,"b":2}]"#);

    // A batch from another tab arrives as one message: one call too.
    let remote = there
        .batch(|batch| {
            batch.set(&unit, &a, 3)?;
            batch.set(&unit, &b, 4)
        })
        .unwrap();
    here.receive_text(&remote.message.unwrap().encode().unwrap())
        .unwrap();
    next_task().await;
    assert_eq!(calls(), r#"[{"a":3,"b":4}]"#);

    // Two writes in two tasks are two change sets; an unchanged value is none.
    here.set(&unit, &a, 5).unwrap();
    next_task().await;
    here.set(&unit, &b, 4).unwrap();
    here.set(&unit, &b, 6).unwrap();
    next_task().await;
    assert_eq!(calls(), r#"[{"a":5},{"b":6}]"#);

    // One unsubscribe stops every part, even a flush already queued.
    let before = here.subscription_count();
    here.set(&unit, &a, 7).unwrap();
    js("window.__stop(); return null;");
    assert_eq!(here.subscription_count(), before - 2);
    next_task().await;
    assert_eq!(calls(), "[]");
    drop(owner);
}

#[wasm_bindgen_test]
fn a_refused_batch_subscription_leaves_nothing_behind() {
    let owner = Owner::new();
    owner.with(|| {
        let manager = install("js6");
        manager.declare(&shared("a")).unwrap();
        let out = js(r#"
            const u = window.gaesup.unit('js6/b/el');
            // A getter that throws, a revoked proxy, a list refused by its
            // length alone, not a list: each an error with a code, and the
            // handle still works after them.
            const trap = ['a', 'a'];
            Object.defineProperty(trap, 1, { get() { throw new Error('boom'); } });
            const { proxy: revoked, revoke } = Proxy.revocable([], {});
            revoke();
            const codes = [];
            for (const names of [['a', 'missing'], [], [1], trap, revoked, new Array(5e8), 'a']) {
                try { u.subscribeBatch(names, () => {}); codes.push('ok'); } catch (e) { codes.push(e.code); }
            }
            const stop = u.subscribeBatch(['a'], () => {});
            stop();
            return codes;
        "#);
        assert_eq!(
            out,
            r#"["unknown_key","bad_value","bad_value","bad_value","bad_value","bad_value","bad_value"]"#
        );
        assert_eq!(manager.subscription_count(), 0);
    });
}

#[wasm_bindgen_test]
fn a_write_at_a_path_reaches_the_subscribers_of_that_path() {
    let owner = Owner::new();
    owner.with(|| {
        install("js8");
        let out = js(r#"
            const u = window.gaesup.unit('js8/b/el');
            u.declare('doc', { scope: 'building', default: { rows: { r1: { qty: 1 } }, n: 0 } });
            const seen = [];
            const stops = ['rows.r1.qty', 'n'].map((path) =>
                u.subscribe('doc', (v) => seen.push([path, v]), { path }));
            u.setPath('doc', 'rows.r1.qty', 5);
            u.setPath('doc', 'rows.r2', { qty: 2 });
            const codes = [];
            for (const [path, value] of [['rows.r9.qty', 1], ['', 1], ['n', undefined]]) {
                try { u.setPath('doc', path, value); } catch (e) { codes.push(e.code); }
            }
            stops.forEach((stop) => stop());
            return { seen, doc: u.get('doc'), codes };
        "#);
        assert_eq!(
            out,
            r#"{"seen":[["rows.r1.qty",5]],"doc":{"n":0,"rows":{"r1":{"qty":5},"r2":{"qty":2}}},"codes":["invalid_path","invalid_path","bad_value"]}"#
        );
    });
}

#[wasm_bindgen_test]
fn writes_at_several_paths_are_one_write_or_none() {
    let owner = Owner::new();
    owner.with(|| {
        install("js9");
        let out = js(r#"
            const u = window.gaesup.unit('js9/b/el');
            u.declare('doc', { scope: 'building', default: { rows: ['a', 'b', 'c'], n: 0 } });
            const seen = [];
            const stops = ['rows.0', 'rows.1', 'rows.2', 'n', ''].map((path) =>
                u.subscribe('doc', (v) => seen.push([path, v]), path ? { path } : {}));
            u.setPaths('doc', [['rows.0', 'A'], ['rows.2', 'C']]);
            u.setPaths('doc', Object.entries({ n: 1 }));
            const many = Array.from({ length: 4097 }, (_, i) => ['f' + i, i]);
            // Refused by their length, nothing read: a sparse list of
            // 500 million, and one whose items would each throw.
            const sparse = new Array(5e8);
            const throwing = new Proxy(many, { get: (list, at) => {
                if (at === 'length') return list.length;
                throw new Error('read ' + String(at));
            } });
            // Read by index: an iterator that never ends is not used.
            const looping = [['n', 2]];
            looping[Symbol.iterator] = function* () { for (;;) yield 0; };
            const trap = [['n', 3]];
            Object.defineProperty(trap, 1, { get() { throw new Error('boom'); } });
            const { proxy: revoked, revoke } = Proxy.revocable([], {});
            revoke();
            // One object of 200 kB named four times: 800 kB of JSON.
            const big = { s: 'x'.repeat(200000) };
            const same = ['a', 'b', 'c', 'd'].map((f) => ['rows.' + f, big]);
            const codes = [];
            for (const writes of [
                [['rows.0', 'x'], ['rows.9', 'y']],
                [['rows', []], ['rows.0', 'x']],
                [],
                many,
                sparse,
                throwing,
                [['n']],
                'n',
                [[1, 2]],
                [['n', undefined]],
                [['n..', 1]],
                trap,
                revoked,
                same,
                looping,
            ]) {
                try { u.setPaths('doc', writes); codes.push('ok'); } catch (e) {
                    codes.push(e.code === 'too_large' && /values of one write/.test(e.message)
                        ? 'too_large before converting them all' : e.code);
                }
            }
            stops.forEach((stop) => stop());
            return { seen, doc: u.get('doc'), codes };
        "#);
        assert_eq!(
            out,
            concat!(
                r#"{"seen":[["",{"n":0,"rows":["A","b","C"]}],["rows.0","A"],["rows.2","C"],"#,
                r#"["",{"n":1,"rows":["A","b","C"]}],["n",1],"#,
                r#"["",{"n":2,"rows":["A","b","C"]}],["n",2]],"#,
                r#""doc":{"n":2,"rows":["A","b","C"]},"#,
                r#""codes":["invalid_path","invalid_path","invalid_path","invalid_path","invalid_path","invalid_path","#,
                r#""bad_value","bad_value","bad_value","bad_value","invalid_path","bad_value","bad_value","#,
                r#""too_large before converting them all","ok"]}"#
            )
        );
    });
}

#[wasm_bindgen_test]
fn paths_meta_and_optimistic_writes() {
    let owner = Owner::new();
    owner.with(|| {
        install("js7");
        let out = js(r#"
            const u = window.gaesup.unit('js7/b/el');
            const other = window.gaesup.unit('js7/b/other');
            u.declare('cart', { scope: 'building', default: { items: [{ qty: 1 }], owner: 'a' } });
            const seen = [];
            const stop = u.subscribe('cart', (qty) => seen.push(qty), { path: 'items.0.qty' });
            u.set('cart', { items: [{ qty: 1 }], owner: 'b' });
            other.set('cart', { items: [{ qty: 2 }], owner: 'b' });
            u.set('cart', { items: [], owner: 'b' });
            stop();
            const before = u.meta('cart');
            const kept = u.setOptimistic('cart', { items: [{ qty: 9 }] });
            kept.confirm();
            const undone = u.setOptimistic('cart', { items: [{ qty: 10 }] });
            const reverted = undone.revert();
            const overtaken = u.setOptimistic('cart', { items: [{ qty: 11 }] });
            other.set('cart', { items: [{ qty: 12 }] });
            const kept2 = overtaken.revert();
            let badPath = null;
            try { u.getPath('cart', ''); } catch (e) { badPath = e.code; }
            // Settled once: a second confirm or revert says so, with a code.
            const settled = [() => kept.confirm(), () => undone.revert(), () => undone.confirm(), () => overtaken.revert()]
                .map((again) => { try { again(); return 'ok'; } catch (e) { return `${e.code}: ${e.message}`; } });
            return {
                settled, seen, before: before.lastWriter, reverted, kept2,
                now: u.getPath('cart', 'items.0.qty'), missing: u.getPath('cart', 'items.5.qty') === undefined,
                writer: u.meta('cart').lastWriter, version: typeof u.meta('cart').version, badPath,
            };
        "#);
        assert_eq!(
            out,
            r#"{"settled":["bad_value: bad value: this write was already confirmed or reverted","bad_value: bad value: this write was already confirmed or reverted","bad_value: bad value: this write was already confirmed or reverted","bad_value: bad value: this write was already confirmed or reverted"],"seen":[2,null],"before":"js7/b/el","reverted":true,"kept2":false,"now":12,"missing":true,"writer":"js7/b/other","version":"string","badPath":"invalid_path"}"#
        );
    });
}

#[wasm_bindgen_test]
fn names_that_are_not_strings_and_callbacks_that_are_not_functions_are_refused() {
    let owner = Owner::new();
    owner.with(|| {
        install("js9");
        // Before, wasm-bindgen's glue copied these into the wasm as if
        // they were strings: `memory access out of bounds`, no code.
        let out = js(r#"
            const codes = [];
            const attempt = (run) => {
                try { run(); codes.push('taken'); } catch (e) { codes.push(e.code ?? String(e)); }
            };
            attempt(() => window.gaesup.unit(7));
            attempt(() => window.gaesup.unit({ length: 0xffffffff }));
            const u = window.gaesup.unit('js9/b/el');
            u.declare('n', { scope: 'building', strategy: 'sum' });
            attempt(() => u.get(42));
            attempt(() => u.get({ length: 0xffffffff }));
            attempt(() => u.set(undefined, 1));
            attempt(() => u.setPath('n', 3, 1));
            attempt(() => u.getPath(null, 'a'));
            attempt(() => u.increment(5, 1));
            attempt(() => u.meta([]));
            attempt(() => u.declare(1, {}));
            attempt(() => u.emit(2, null));
            attempt(() => u.subscribe('n'));
            attempt(() => u.subscribe('n', 'not a function'));
            attempt(() => u.on('wave', {}));
            attempt(() => u.subscribeBatch(['n'], 3));
            // Still working afterwards.
            u.increment('n', 2);
            return { codes, n: u.get('n'), relay: window.gaesup.relay(5) };
        "#);
        let bad = r#""bad_value""#;
        let codes = [bad; 15].join(",");
        assert_eq!(out, format!(r#"{{"codes":[{codes}],"n":2,"relay":null}}"#));
    });
}

#[wasm_bindgen_test]
fn a_callback_stopped_by_another_is_not_told_and_a_throwing_one_is_reported() {
    let owner = Owner::new();
    owner.with(|| {
        install("js10");
        let out = js(r#"
            const reported = [];
            const report = globalThis.reportError;
            globalThis.reportError = (error) => reported.push(error.message);
            try {
                const u = window.gaesup.unit('js10/b/el');
                u.declare('n', { scope: 'building', strategy: 'sum' });
                const seen = [];
                let stopSecond;
                u.subscribe('n', () => { throw new Error('first threw'); });
                u.subscribe('n', (v) => { seen.push(['stopper', v]); stopSecond(); });
                stopSecond = u.subscribe('n', (v) => seen.push(['stopped', v]));
                u.subscribe('n', (v) => seen.push(['last', v]));
                let stopHeard;
                u.on('wave', () => { seen.push(['first listener']); stopHeard(); });
                stopHeard = u.on('wave', () => seen.push(['stopped listener']));
                u.increment('n', 1);
                u.emit('wave', null);
                return { seen, reported };
            } finally {
                globalThis.reportError = report;
            }
        "#);
        assert_eq!(
            out,
            r#"{"seen":[["stopper",1],["last",1],["first listener"]],"reported":["first threw"]}"#
        );
    });
}

#[wasm_bindgen_test]
async fn set_confirmed_rejects_as_unconfirmed_when_nobody_will_say() {
    let owner = Owner::new();
    let manager = owner.with(|| install("js11"));
    manager.enable_confirmations().unwrap();
    let promise: js_sys::Promise = owner.with(|| {
        Function::new_no_args(
            "const u = window.gaesup.unit('js11/b/el');
             u.declare('t', { scope: 'building', lifetime: 'persistent' });
             return u.setConfirmed('t', 'sent');",
        )
        .call0(&JsValue::NULL)
        .unwrap()
        .into()
    });
    // 10,000 writes wait after it: it is told nobody will say.
    // Of a key another tab wrote (undeclared here: it may go to a relay).
    let elsewhere: gaesup_state::core::FullKey = "global/elsewhere".parse().unwrap();
    let others: Vec<_> = (0..10_000u64)
        .map(|seq| {
            let op = gaesup_state::core::OpId {
                tab: TabId::new(99),
                seq,
            };
            manager.confirmation(op, &elsewhere).unwrap()
        })
        .collect();
    let Err(error) = wasm_bindgen_futures::JsFuture::from(promise).await else {
        panic!("resolved, as if the relay had applied it");
    };
    let code = js_sys::Reflect::get(&error, &"code".into()).unwrap();
    assert_eq!(code.as_string().as_deref(), Some("unconfirmed"));
    let kept = js("return window.gaesup.unit('js11/b/el').get('t');");
    assert_eq!(kept, r#""sent""#);
    drop(others);
}

#[wasm_bindgen_test]
fn values_without_json_too_large_or_too_deep_say_so_before_costing_memory() {
    let owner = Owner::new();
    owner.with(|| {
        install("js12");
        let memory = || {
            wasm_bindgen::memory()
                .unchecked_into::<js_sys::WebAssembly::Memory>()
                .buffer()
                .unchecked_into::<js_sys::ArrayBuffer>()
                .byte_length()
        };
        let before = memory();
        let out = js(r#"
            const u = window.gaesup.unit('js12/b/el');
            u.declare('v', {});
            const attempt = (value) => {
                try { u.set('v', value); return 'taken'; } catch (e) { return [e.code, e.message]; }
            };
            const cycle = {}; cycle.self = cycle;
            const getter = { get boom() { throw new Error('the getter threw'); } };
            let deep = 1; for (let i = 0; i < 200; i += 1) deep = [deep];
            return {
                bigint: attempt({ n: 10n }),
                cycle: attempt(cycle),
                getter: attempt(getter),
                deep: attempt(deep),
                huge: attempt('x'.repeat(64 * 1024 * 1024)),
                token: attempt({ '$serde_json::private::RawValue': '[1]' }),
                fine: attempt({ ok: 1 }),
            };
        "#);
        let out: serde_json::Value = serde_json::from_str(&out).unwrap();
        let said = |name: &str| -> (String, String) {
            let pair = &out[name];
            (
                pair[0].as_str().unwrap_or_default().to_owned(),
                pair[1].as_str().unwrap_or_default().to_owned(),
            )
        };
        // A BigInt is an integer's exact form: taken (past 64 bits it is
        // refused, see `integers_past_2_53_cross_as_bigints_exactly`).
        assert_eq!(out["bigint"], "taken");
        let (code, message) = said("cycle");
        assert_eq!(code, "bad_value");
        assert!(message.contains("circular"), "{message}");
        let (code, message) = said("getter");
        assert_eq!(code, "bad_value");
        assert!(message.contains("the getter threw"), "{message}");
        assert_eq!(said("deep").0, "too_deep");
        assert_eq!(said("huge").0, "too_large");
        // Refused by its length: the 64 MiB text never entered the wasm.
        let grown = memory().saturating_sub(before);
        assert!(grown < 16 << 20, "the wasm's memory grew by {grown} bytes");
        assert_eq!(said("token").0, "malformed");
        assert_eq!(out["fine"], "taken");
    });
}

#[wasm_bindgen_test]
async fn each_key_declared_after_start_up_is_announced_once_in_a_microtask() {
    let owner = Owner::new();
    let during = owner.with(|| {
        let manager = install("js20");
        // Published again (as a page may): still one announcement per key.
        install_js_binding([("js20".to_owned(), manager)]).unwrap();
        js(r#"
            window.declaredInJs20 = [];
            window.addEventListener('gaesup:declared', (event) => {
                if (event.detail.apartment === 'js20') window.declaredInJs20.push(event.detail);
            });
            return null;
        "#);
        manager.declare(&shared("late")).unwrap();
        // Not from inside the manager's call: a listener may call it.
        let during = js("return window.declaredInJs20.length;");
        js(r#"
            const u = window.gaesup.unit('js20/b/el');
            u.declare('fromJs', { scope: 'apartment' });
            u.declare('fromJs', { scope: 'apartment' });
            return null;
        "#);
        // Declared already: not announced again.
        manager.declare(&shared("late")).unwrap();
        during
    });
    assert_eq!(during, "0");
    next_task().await;
    assert_eq!(
        js("return window.declaredInJs20;"),
        r#"[{"apartment":"js20","name":"late","scope":"building"},{"apartment":"js20","name":"fromJs","scope":"apartment"}]"#
    );
}

#[wasm_bindgen_test]
fn a_number_json_has_no_form_for_is_refused_not_stored_as_null() {
    // `JSON.stringify` writes NaN and ±Infinity as null: before, the write
    // stored a null the unit never wrote.
    let owner = Owner::new();
    owner.with(|| {
        install("js40");
        let out = js(r#"
            const u = window.gaesup.unit('js40/b/el');
            u.declare('v', { scope: 'building', default: { n: 1 } });
            const refused = [];
            const values = [{ n: NaN }, [1, Infinity], -Infinity, { a: { b: [null, NaN] } }, { n: new Number(NaN) }];
            for (const value of values) {
                try { u.set('v', value); refused.push('ok'); } catch (e) { refused.push(`${e.code}: ${e.message}`); }
            }
            // A null written as null, a number and a string that reads
            // like a null still go in.
            u.set('v', { n: null, m: 2, s: 'annulled :null' });
            return { refused, now: u.get('v') };
        "#);
        assert_eq!(
            out,
            concat!(
                r#"{"refused":["#,
                r#""bad_value: bad value: NaN has no JSON form (JSON would store null in its place): at `n`","#,
                r#""bad_value: bad value: Infinity has no JSON form (JSON would store null in its place): at `1`","#,
                r#""bad_value: bad value: -Infinity has no JSON form (JSON would store null in its place): at the value itself","#,
                r#""bad_value: bad value: NaN has no JSON form (JSON would store null in its place): at `1`","#,
                r#""bad_value: bad value: NaN has no JSON form (JSON would store null in its place): at `n`"],"#,
                r#""now":{"m":2,"n":null,"s":"annulled :null"}}"#
            )
        );
    });
}

/// An integer past 2^53 crosses as a BigInt both ways. Before, `JSON.parse`
/// rounded it on its way to JavaScript (2^53 + 1 read as 2^53, and a write
/// of what was read stored the rounded number), and a BigInt written was
/// refused: JSON has no BigInt.
#[wasm_bindgen_test]
fn integers_past_2_53_cross_as_bigints_exactly() {
    let owner = Owner::new();
    owner.with(|| {
        let manager = install("js41");
        let rust_unit: gaesup_state::UnitAddress = "js41/b/rust".parse().unwrap();
        let id = SharedKey::<u64>::builder("id")
            .scope(Scope::Building)
            .build()
            .unwrap();
        let doc = SharedKey::<serde_json::Value>::builder("doc")
            .scope(Scope::Building)
            .build()
            .unwrap();
        manager.declare(&id).unwrap();
        manager.declare(&doc).unwrap();
        manager.set(&rust_unit, &id, 9_007_199_254_740_993).unwrap();
        let out = js(r#"
            const u = window.gaesup.unit('js41/b/el');
            u.declare('id', { scope: 'building' });
            u.declare('doc', { scope: 'building' });
            const shown = (v) => `${typeof v} ${v}`;
            const read = shown(u.get('id'));
            const heard = [];
            const stop = u.subscribe('id', (v) => heard.push(shown(v)));
            u.set('id', 2n ** 64n - 1n);
            stop();
            u.set('doc', { big: -(2n ** 63n), small: 3, float: 0.30000000000000004, text: '12345678901234567890' });
            const doc = u.get('doc');
            const fields = Object.entries(doc).map(([k, v]) => `${k}: ${shown(v)}`);
            const events = [];
            const off = u.on('big', (data) => events.push(shown(data.n)), { scope: 'building' });
            u.emit('big', { n: 2n ** 60n }, { scope: 'building' });
            off();
            const refused = [];
            for (const n of [2n ** 64n, -(2n ** 63n) - 1n]) {
                try { u.set('doc', { n }); refused.push('ok'); } catch (e) { refused.push(`${e.code}: ${e.message}`); }
            }
            return { read, heard, fields, events, refused };
        "#);
        assert_eq!(
            out,
            concat!(
                r#"{"read":"bigint 9007199254740993","heard":["bigint 18446744073709551615"],"#,
                r#""fields":["big: bigint -9223372036854775808","float: number 0.30000000000000004","#,
                r#""small: number 3","text: string 12345678901234567890"],"#,
                r#""events":["bigint 1152921504606846976"],"refused":["#,
                r#""bad_value: bad value: the integer 18446744073709551616n lies past what a value holds exactly (-2^63 to 2^64 - 1)","#,
                r#""bad_value: bad value: the integer -9223372036854775809n lies past what a value holds exactly (-2^63 to 2^64 - 1)"]}"#
            )
        );
        assert_eq!(manager.get(&rust_unit, &id).unwrap(), u64::MAX);
        assert_eq!(
            manager.get(&rust_unit, &doc).unwrap(),
            serde_json::json!({"big": i64::MIN, "small": 3, "float": 0.30000000000000004, "text": "12345678901234567890"})
        );
    });
}

#[wasm_bindgen_test]
fn declaring_a_key_again_with_another_default_is_a_mismatch() {
    // Before, a default given was never compared: the unit's first read
    // showed another value than it declared.
    let owner = Owner::new();
    owner.with(|| {
        let manager = install("js41");
        let rust = SharedKey::<f64>::builder("ratio")
            .scope(Scope::Building)
            .build()
            .unwrap();
        manager.declare(&rust).unwrap();
        let scale = SharedKey::<f32>::builder("scale")
            .scope(Scope::Building)
            .default_value(0.1)
            .build()
            .unwrap();
        manager.declare(&scale).unwrap();
        let shape = SharedKey::<serde_json::Value>::builder_with_default(
            "shape",
            serde_json::json!({"nick": null, "n": 1}),
        )
        .scope(Scope::Building)
        .build()
        .unwrap();
        manager.declare(&shape).unwrap();
        let big = SharedKey::<i64>::builder("big")
            .scope(Scope::Building)
            .default_value(16_777_216)
            .build()
            .unwrap();
        manager.declare(&big).unwrap();
        let out = js(r#"
            const u = window.gaesup.unit('js41/b/el');
            u.declare('d', { scope: 'building', default: { n: 1 } });
            const seen = [];
            const rules = [
                ['d', { scope: 'building', default: { n: 2 } }],
                ['d', { scope: 'building', default: { n: 1.0 } }],
                ['d', { scope: 'building' }],
                // A Rust f64's 0.0 is JavaScript's 0.
                ['ratio', { scope: 'building', default: 0 }],
                ['ratio', { scope: 'building', default: 0.5 }],
                // A Rust f32's 0.1 is 0.10000000149011612 in JSON; a field
                // null there is one JavaScript leaves out.
                ['scale', { scope: 'building', default: 0.1 }],
                ['shape', { scope: 'building', default: { n: 1 } }],
                ['shape', { scope: 'building', default: { n: 2 } }],
                // Equal as f32, not as what either wrote.
                ['big', { scope: 'building', default: 16777217 }],
            ];
            for (const [name, rule] of rules) {
                try { u.declare(name, rule); seen.push('ok'); } catch (e) { seen.push(`${e.code}: ${e.message}`); }
            }
            return seen;
        "#);
        assert_eq!(
            out,
            concat!(
                r#"["key_mismatch: key building:d declared twice with different rules: default is {\"n\":1}, not {\"n\":2}","#,
                r#""ok","ok","ok","#,
                r#""key_mismatch: key building:ratio declared twice with different rules: default is 0.0, not 0.5","#,
                r#""ok","ok","#,
                r#""key_mismatch: key building:shape declared twice with different rules: default is {\"n\":1,\"nick\":null}, not {\"n\":2}","#,
                r#""key_mismatch: key building:big declared twice with different rules: default is 16777216, not 16777217"]"#
            )
        );
    });
}
