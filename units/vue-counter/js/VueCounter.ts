// The building's count, shared with the Leptos counter next to it, and the
// apartment's shared note, shared with the Leptos "Shared note" unit.
// Values are rendered as text (h() children), never as innerHTML.
import { defineComponent, h, ref } from 'vue';
import { useSharedState } from './gaesup';

export const VueCounter = defineComponent({
  name: 'VueCounter',
  setup() {
    const count = useSharedState<number>('count', 0);
    const note = useSharedState<string>('shared-note', '');
    const draft = ref('');
    const broken = ref(false);
    const save = (event: Event) => {
      event.preventDefault();
      note.set(draft.value);
    };
    return () => {
      if (broken.value) throw new Error('the Vue counter was told to fail');
      const error = count.meta.value.error ?? note.meta.value.error;
      const writer = note.meta.value.lastWriter;
      return h('div', { class: 'framework-unit' }, [
        h('div', { class: 'counter' }, [
          h(
            'output',
            { class: 'counter-value', 'aria-live': 'polite', 'aria-label': 'Count' },
            String(count.value.value),
          ),
          h('div', { class: 'counter-actions' }, [
            h('button', { type: 'button', 'aria-label': 'Decrement', onClick: () => count.set.increment(-1) }, '−'),
            h('button', { type: 'button', 'aria-label': 'Increment', onClick: () => count.set.increment(1) }, '+'),
            h('button', { type: 'button', onClick: () => count.set(0) }, 'Reset'),
          ]),
        ]),
        h('form', { class: 'framework-note', onSubmit: save }, [
          h('label', null, [
            'Note ',
            h('input', {
              value: draft.value,
              onInput: (event: Event) => (draft.value = (event.target as HTMLInputElement).value),
            }),
          ]),
          h('button', { type: 'submit' }, 'Save note'),
        ]),
        h('p', null, ['Shared note: ', h('output', { 'aria-label': 'Shared note' }, note.value.value)]),
        h('p', null, writer ? `Written by ${writer}` : 'Nobody wrote it yet'),
        h('p', { role: 'alert', class: 'unit-error' }, error ? `${error.code ?? 'error'}: ${error.message}` : ''),
        h('button', { type: 'button', onClick: () => (broken.value = true) }, 'Break this unit'),
      ]);
    };
  },
});
