// The Svelte counter's entry: <gaesup-unit> imports this module when the
// unit is shown and calls mount().
import { mount as mountComponent, unmount } from 'svelte';
import { svelteBindings } from 'gaesup-bindings';
import Root from './Root.svelte';

export function mount(element, { unit, fail, onUnmount }) {
  // The stores of this unit's address, for every component of the unit.
  const context = new Map([['gaesup', svelteBindings(unit)]]);
  const root = mountComponent(Root, { target: element, props: { fail }, context });
  // Registered as soon as it is mounted: undone even if something after
  // this throws.
  const stop = () => unmount(root);
  // (A cached older <gaesup-unit> may not offer it.)
  onUnmount?.(stop);
  return stop;
}
