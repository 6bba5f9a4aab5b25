// The bindings, bound to this unit's Vue (only the functions they use, so
// the rest of Vue can be left out of the bundle).
import { computed, getCurrentScope, inject, onScopeDispose, shallowRef } from 'vue';
import { vueBindings } from 'gaesup-bindings';

export const { provideUnit, useSharedState, useStatePath, useContainerEvent } = vueBindings({
  computed,
  getCurrentScope,
  inject,
  onScopeDispose,
  shallowRef,
});
