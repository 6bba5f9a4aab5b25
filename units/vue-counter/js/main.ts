// The Vue counter's entry: <gaesup-unit> imports this module when the
// unit is shown and calls mount().
import { createApp } from 'vue';
import type { MountOptions } from 'gaesup-bindings';
import { provideUnit } from './gaesup';
import { VueCounter } from './VueCounter';

export function mount(element: HTMLElement, { unit, fail, onUnmount }: MountOptions): () => void {
  const app = createApp(VueCounter);
  provideUnit(app, unit);
  // An error the unit did not handle ends it: the shell shows its fallback
  // in the unit's frame.
  app.config.errorHandler = (error) => fail(error);
  app.mount(element);
  // Registered as soon as it is mounted: undone even if something after
  // this throws.
  const unmount = () => app.unmount();
  // (A cached older <gaesup-unit> may not offer it.)
  onUnmount?.(unmount);
  return unmount;
}
