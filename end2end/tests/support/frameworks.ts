import type { Locator, Page } from '@playwright/test';
import { CounterUnit } from './apartment';
import { unitFrame } from './units';

// The Atelier apartment: building `studio` holds the Leptos counter, a
// React, a Svelte and a Vue unit (units/*-counter/js/) sharing its count,
// and the Leptos shared note they also share; building `devtools` holds
// the inspector.

export const STUDIO = '/apartment/atelier/building/studio';
export const ATELIER = '/apartment/atelier';
/** The building's count, as the inspector lists it. */
export const COUNT_KEY = 'building/atelier/studio/count';

/** A framework unit: its framework, its frame's title, its address. */
export interface Framework {
  name: string;
  title: string;
  address: string;
}

export const FRAMEWORKS: readonly Framework[] = [
  { name: 'React', title: 'React counter', address: 'atelier/studio/react' },
  { name: 'Svelte', title: 'Svelte counter', address: 'atelier/studio/svelte' },
  { name: 'Vue', title: 'Vue counter', address: 'atelier/studio/vue' },
];

/** A framework unit: a counter (as the Leptos one), a note form, a break button. */
export class FrameworkUnit extends CounterUnit {
  constructor(page: Page, readonly framework: Framework) {
    super(unitFrame(page, framework.title));
  }

  noteField(): Locator {
    return this.root.getByRole('textbox', { name: 'Note', exact: true });
  }

  async saveNote(text: string): Promise<void> {
    await this.noteField().fill(text);
    await this.root.getByRole('button', { name: 'Save note', exact: true }).click();
  }

  sharedNote(): Locator {
    return this.root.getByRole('status', { name: 'Shared note', exact: true });
  }

  breakIt(): Promise<void> {
    return this.root.getByRole('button', { name: 'Break this unit', exact: true }).click();
  }

  /** The frame's fallback, from the shell, when the unit failed. */
  failure(): Locator {
    return this.root.getByRole('alert').filter({ hasText: 'This unit failed' });
  }

  retry(): Promise<void> {
    return this.root.getByRole('button', { name: 'Retry', exact: true }).click();
  }
}

export function leptosCounter(page: Page): CounterUnit {
  return new CounterUnit(unitFrame(page, 'Leptos counter'));
}
