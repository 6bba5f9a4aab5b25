// The building's count, shared with the Leptos counter next to it, and the
// apartment's shared note, shared with the Leptos "Shared note" unit.
// Values are rendered as text (JSX escapes them), never as HTML.
import { useState, type FormEvent } from 'react';
import { useSharedState } from './gaesup';

export function ReactCounter() {
  const [count, setCount, countMeta] = useSharedState('count', 0);
  const [note, setNote, noteMeta] = useSharedState('shared-note', '');
  const [draft, setDraft] = useState('');
  const [broken, setBroken] = useState(false);
  if (broken) throw new Error('the React counter was told to fail');

  const save = (event: FormEvent) => {
    event.preventDefault();
    setNote(draft);
  };
  const error = countMeta.error ?? noteMeta.error;
  return (
    <div className="framework-unit">
      <div className="counter">
        <output className="counter-value" aria-live="polite" aria-label="Count">
          {count}
        </output>
        <div className="counter-actions">
          <button type="button" aria-label="Decrement" onClick={() => setCount.increment(-1)}>
            −
          </button>
          <button type="button" aria-label="Increment" onClick={() => setCount.increment(1)}>
            +
          </button>
          <button type="button" onClick={() => setCount(0)}>
            Reset
          </button>
        </div>
      </div>
      <form className="framework-note" onSubmit={save}>
        <label>
          Note <input value={draft} onChange={(event) => setDraft(event.target.value)} />
        </label>
        <button type="submit">Save note</button>
      </form>
      <p>
        Shared note: <output aria-label="Shared note">{note}</output>
      </p>
      <p>{noteMeta.lastWriter ? `Written by ${noteMeta.lastWriter}` : 'Nobody wrote it yet'}</p>
      <p role="alert" className="unit-error">
        {error ? `${error.code ?? 'error'}: ${error.message}` : ''}
      </p>
      <button type="button" onClick={() => setBroken(true)}>
        Break this unit
      </button>
    </div>
  );
}
