import { test, expect } from './support/fixtures';
import {
  TODO_ADDRESS,
  TODOS_STORAGE_KEY,
  TodoUnit,
  V1_ENTRY,
  filterAddress,
  plantBeforeLoad,
  storedTodos,
  watchErrors,
} from './support/todo';

// The todo unit against the TodoMVC app specification (tastejs/todomvc,
// app-spec.md). Every test starts from a fresh browser context, so from an
// empty localStorage.

test.describe('todo: new todo', () => {
  test('is focused on the unit address, and main and footer are hidden while empty', async ({ page }) => {
    const todo = new TodoUnit(page);
    await todo.goto();
    await expect(todo.newTodo()).toBeFocused();
    await expect(todo.main()).toHaveCount(0);
    await expect(todo.footer()).toHaveCount(0);
  });

  test('Enter adds the trimmed title, appends it and clears the input', async ({ page }) => {
    const todo = new TodoUnit(page);
    await todo.goto();
    await todo.add('  Buy milk  ', 'Walk the dog');
    await expect(todo.titles()).toHaveText(['Buy milk', 'Walk the dog']);
    await expect(todo.newTodo()).toHaveValue('');
    await expect(todo.main()).toBeVisible();
    await expect(todo.footer()).toBeVisible();
  });

  test('a blank title adds nothing', async ({ page }) => {
    const todo = new TodoUnit(page);
    await todo.goto();
    await todo.add('first');
    await todo.add('    ');
    await expect(todo.titles()).toHaveText(['first']);
    await expect(todo.count()).toHaveText('1 item left');
  });

  test('titles of any length and content are shown as text', async ({ page }) => {
    const todo = new TodoUnit(page);
    await todo.goto();
    const markup = '<img src=x onerror="window.__owned=1"><b>bold?</b>';
    const long = 'long '.repeat(400).trim();
    await todo.add(markup, long);
    await expect(todo.titles()).toHaveText([markup, long]);
    await expect(todo.root.locator('.todo-list img, .todo-list b')).toHaveCount(0);
    expect(await page.evaluate(() => (window as { __owned?: number }).__owned)).toBeUndefined();
  });
});

test.describe('todo: items', () => {
  test('toggling one marks it completed and updates the count', async ({ page }) => {
    const todo = new TodoUnit(page);
    await todo.goto();
    await todo.add('one', 'two');
    await todo.toggle('one').check();
    await expect(todo.item('one')).toHaveClass(/\bcompleted\b/);
    await expect(todo.item('two')).not.toHaveClass(/\bcompleted\b/);
    await expect(todo.count()).toHaveText('1 item left');
    await todo.toggle('one').uncheck();
    await expect(todo.item('one')).not.toHaveClass(/\bcompleted\b/);
    await expect(todo.count()).toHaveText('2 items left');
  });

  test('the count pluralizes: 0 items, 1 item, 2 items', async ({ page }) => {
    const todo = new TodoUnit(page);
    await todo.goto();
    await todo.add('one');
    await expect(todo.count()).toHaveText('1 item left');
    await expect(todo.count().locator('strong')).toHaveText('1');
    await todo.add('two');
    await expect(todo.count()).toHaveText('2 items left');
    await todo.toggle('one').check();
    await todo.toggle('two').check();
    await expect(todo.count()).toHaveText('0 items left');
  });

  test('the destroy button removes a todo', async ({ page }) => {
    const todo = new TodoUnit(page);
    await todo.goto();
    await todo.add('keep', 'drop');
    await todo.destroy('drop');
    await expect(todo.titles()).toHaveText(['keep']);
    await todo.destroy('keep');
    await expect(todo.items()).toHaveCount(0);
    await expect(todo.footer()).toHaveCount(0);
  });
});

test.describe('todo: editing', () => {
  test('double-click edits in a focused input; Enter saves the trimmed text', async ({ page }) => {
    const todo = new TodoUnit(page);
    await todo.goto();
    await todo.add('Buy milk', 'Walk the dog');
    const input = await todo.startEditing('Buy milk');
    await expect(input).toBeFocused();
    await expect(input).toHaveValue('Buy milk');
    await expect(todo.item('Buy milk')).toHaveClass(/\bediting\b/);
    await input.fill('  Buy oat milk  ');
    await input.press('Enter');
    await expect(todo.titles()).toHaveText(['Buy oat milk', 'Walk the dog']);
    await expect(todo.root.getByRole('textbox', { name: 'Edit' })).toHaveCount(0);
    await expect(todo.item('Buy oat milk')).not.toHaveClass(/\bediting\b/);
  });

  test('blur saves the edit', async ({ page }) => {
    const todo = new TodoUnit(page);
    await todo.goto();
    await todo.add('draft');
    const input = await todo.startEditing('draft');
    await input.fill('final');
    await input.blur();
    await expect(todo.titles()).toHaveText(['final']);
    await expect(todo.root.getByRole('textbox', { name: 'Edit' })).toHaveCount(0);
  });

  test('Escape cancels the edit and keeps the title', async ({ page }) => {
    const todo = new TodoUnit(page);
    await todo.goto();
    await todo.add('unchanged');
    const input = await todo.startEditing('unchanged');
    await input.fill('discarded');
    await input.press('Escape');
    await expect(todo.titles()).toHaveText(['unchanged']);
    await expect(todo.root.getByRole('textbox', { name: 'Edit' })).toHaveCount(0);
  });

  test('an edit left empty removes the todo', async ({ page }) => {
    const todo = new TodoUnit(page);
    await todo.goto();
    await todo.add('keep', 'empty me');
    const input = await todo.startEditing('empty me');
    await input.fill('   ');
    await input.press('Enter');
    await expect(todo.titles()).toHaveText(['keep']);
    await expect(todo.count()).toHaveText('1 item left');
  });
});

test.describe('todo: mark all and clear completed', () => {
  test('"Mark all as complete" toggles every todo and follows single toggles', async ({ page }) => {
    const todo = new TodoUnit(page);
    await todo.goto();
    await todo.add('one', 'two', 'three');
    await expect(todo.toggleAll()).not.toBeChecked();
    await todo.toggleAll().check();
    for (const title of ['one', 'two', 'three']) {
      await expect(todo.item(title)).toHaveClass(/\bcompleted\b/);
    }
    await expect(todo.count()).toHaveText('0 items left');
    await todo.toggle('two').uncheck();
    await expect(todo.toggleAll()).not.toBeChecked();
    await todo.toggle('two').check();
    await expect(todo.toggleAll()).toBeChecked();
    await todo.toggleAll().uncheck();
    await expect(todo.root.locator('.todo-list > li.completed')).toHaveCount(0);
    await expect(todo.count()).toHaveText('3 items left');
  });

  test('"Clear completed" shows only when something is completed and removes those', async ({ page }) => {
    const todo = new TodoUnit(page);
    await todo.goto();
    await todo.add('one', 'two', 'three');
    await expect(todo.clearCompleted()).toHaveCount(0);
    await todo.toggle('one').check();
    await todo.toggle('three').check();
    await expect(todo.clearCompleted()).toBeVisible();
    await todo.clearCompleted().click();
    await expect(todo.titles()).toHaveText(['two']);
    await expect(todo.clearCompleted()).toHaveCount(0);
    await expect(todo.toggleAll()).not.toBeChecked();
  });

  test('after clearing everything, "Mark all as complete" is unchecked', async ({ page }) => {
    const todo = new TodoUnit(page);
    await todo.goto();
    await todo.add('one', 'two');
    await todo.toggleAll().check();
    await todo.clearCompleted().click();
    await expect(todo.items()).toHaveCount(0);
    await todo.add('three');
    await expect(todo.toggleAll()).not.toBeChecked();
  });
});

test.describe('todo: filters are routes', () => {
  test('each filter click is a history entry; back and forward move between filters', async ({ page }) => {
    const todo = new TodoUnit(page);
    await todo.goto();
    await todo.add('active one', 'done one');
    await todo.toggle('done one').check();
    await expect(todo.selectedFilter()).toHaveText('All');

    await todo.filter('Active').click();
    await expect(page).toHaveURL(filterAddress('Active'));
    await expect(todo.selectedFilter()).toHaveText('Active');
    await expect(todo.filter('Active')).toHaveAttribute('aria-current', 'page');
    await expect(todo.titles()).toHaveText(['active one']);

    await todo.filter('Completed').click();
    await expect(page).toHaveURL(filterAddress('Completed'));
    await expect(todo.selectedFilter()).toHaveText('Completed');
    await expect(todo.titles()).toHaveText(['done one']);

    await page.goBack();
    await expect(page).toHaveURL(filterAddress('Active'));
    await expect(todo.selectedFilter()).toHaveText('Active');
    await expect(todo.titles()).toHaveText(['active one']);

    await page.goBack();
    await expect(page).toHaveURL(TODO_ADDRESS);
    await expect(todo.selectedFilter()).toHaveText('All');
    await expect(todo.titles()).toHaveText(['active one', 'done one']);

    await page.goForward();
    await expect(page).toHaveURL(filterAddress('Active'));
    await expect(todo.titles()).toHaveText(['active one']);
    await page.goForward();
    await expect(page).toHaveURL(filterAddress('Completed'));
    await expect(todo.titles()).toHaveText(['done one']);
  });

  test('a todo changed under a filter leaves the filtered list', async ({ page }) => {
    const todo = new TodoUnit(page);
    await todo.goto();
    await todo.add('one', 'two');
    await todo.filter('Active').click();
    await expect(todo.titles()).toHaveText(['one', 'two']);
    // click, not check: the checkbox leaves the page with its todo, so
    // there is no checked state left to confirm.
    await todo.toggle('one').click();
    await expect(todo.titles()).toHaveText(['two']);
    await expect(todo.count()).toHaveText('1 item left');
  });

  test('a deep link opens its filter', async ({ page }) => {
    const todo = new TodoUnit(page);
    await todo.goto('Completed');
    await expect(todo.newTodo()).toBeFocused();
    await todo.add('one', 'two');
    await expect(todo.selectedFilter()).toHaveText('Completed');
    await expect(todo.items()).toHaveCount(0);
    await expect(todo.count()).toHaveText('2 items left');
    await todo.toggleAll().check();
    await expect(todo.titles()).toHaveText(['one', 'two']);
  });

  test('on the apartment page the links point at the unit address, without autofocus', async ({ page }) => {
    await page.goto('/');
    const frame = page.getByRole('article', { name: 'Todos', exact: true });
    const todo = new TodoUnit(page, frame);
    await expect(todo.newTodo()).toBeVisible();
    await expect(todo.newTodo()).not.toBeFocused();
    await todo.add('from the apartment');
    for (const name of ['All', 'Active', 'Completed'] as const) {
      await expect(todo.filter(name)).toHaveAttribute('href', filterAddress(name));
    }
    await expect(todo.selectedFilter()).toHaveText('All');
    await todo.filter('Active').click();
    await expect(page).toHaveURL(filterAddress('Active'));
    const focused = new TodoUnit(page);
    await expect(focused.selectedFilter()).toHaveText('Active');
    await expect(focused.titles()).toHaveText(['from the apartment']);
  });
});

test.describe('todo: state', () => {
  test('the list survives a reload, and so does the filter', async ({ page }) => {
    const todo = new TodoUnit(page);
    await todo.goto();
    await todo.add('kept', 'kept and done');
    await todo.toggle('kept and done').check();
    await todo.filter('Completed').click();
    // Wait until the write reached storage (it is coalesced to a frame).
    await expect.poll(() => storedTodos(page)).toContain('kept and done');
    await page.reload();
    await expect(todo.selectedFilter()).toHaveText('Completed');
    await expect(todo.titles()).toHaveText(['kept and done']);
    await expect(todo.item('kept and done')).toHaveClass(/\bcompleted\b/);
    await todo.filter('All').click();
    await expect(todo.titles()).toHaveText(['kept', 'kept and done']);
    await expect(todo.count()).toHaveText('1 item left');
  });

  test('a second tab sees the list, and each tab sees the other\'s changes', async ({ page, context }) => {
    const first = new TodoUnit(page);
    await first.goto();
    await first.add('from the first tab');

    const secondPage = await context.newPage();
    const secondErrors = watchErrors(secondPage);
    const second = new TodoUnit(secondPage);
    await second.goto();
    await expect(second.titles()).toHaveText(['from the first tab']);

    await second.add('from the second tab');
    await expect(first.titles()).toHaveText(['from the first tab', 'from the second tab']);

    await second.toggle('from the first tab').check();
    await expect(first.item('from the first tab')).toHaveClass(/\bcompleted\b/);
    await expect(first.count()).toHaveText('1 item left');

    const input = await first.startEditing('from the second tab');
    await input.fill('renamed in the first tab');
    await input.press('Enter');
    await expect(second.titles()).toHaveText(['from the first tab', 'renamed in the first tab']);

    await second.clearCompleted().click();
    await expect(first.titles()).toHaveText(['renamed in the first tab']);

    await secondPage.close();
    expect(secondErrors).toEqual([]);
  });

  test('v1 data stored before the upgrade is migrated to v2 on load', async ({ page }) => {
    await plantBeforeLoad(page, TODOS_STORAGE_KEY, V1_ENTRY);
    const todo = new TodoUnit(page);
    await todo.goto();
    await expect(todo.titles()).toHaveText(['Buy milk', 'Walk the dog', '<b>not bold</b>']);
    await expect(todo.item('Walk the dog')).toHaveClass(/\bcompleted\b/);
    await expect(todo.count()).toHaveText('2 items left');

    // The next write stores the list at schema 2, keyed by id.
    await todo.toggle('Buy milk').check();
    await expect.poll(() => storedTodos(page)).toContain('"schema":2');
    const stored = JSON.parse((await storedTodos(page)) ?? 'null');
    expect(stored.schema).toBe(2);
    await page.reload();
    await expect(todo.titles()).toHaveText(['Buy milk', 'Walk the dog', '<b>not bold</b>']);
    await expect(todo.count()).toHaveText('1 item left');
  });
});
