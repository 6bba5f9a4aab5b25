// The React counter's entry: <gaesup-unit> imports this module when the
// unit is shown and calls mount().
import { createRoot } from 'react-dom/client';
import type { MountOptions } from 'gaesup-bindings';
import { UnitProvider } from './gaesup';
import { ReactCounter } from './ReactCounter';

export function mount(element: HTMLElement, { unit, fail, onUnmount }: MountOptions): () => void {
  // An error no component handled ends the unit: the shell shows its
  // fallback in the unit's frame (React has unmounted the tree already).
  const root = createRoot(element, { onUncaughtError: (error) => fail(error) });
  // Registered before rendering: undone even if something below throws.
  const unmount = () => root.unmount();
  // (A cached older <gaesup-unit> may not offer it.)
  onUnmount?.(unmount);
  root.render(
    <UnitProvider address={unit}>
      <ReactCounter />
    </UnitProvider>,
  );
  return unmount;
}
