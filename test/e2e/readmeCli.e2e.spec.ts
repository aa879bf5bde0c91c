import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { shoal } from '../fixtures/cli';

// The README's CLI table is what a newcomer reads first: every command in it must exist, take
// `--help`, and take the flags the table shows.

const readme = readFileSync(join(__dirname, '../../README.md'), 'utf8');

/** `shoal tags get <repo>:<tag> [--at …]` → words `tags get`, flags `--at`, … */
const tableCommands = (): Array<{ text: string; words: string[]; flags: string[] }> => {
  const section = readme.slice(readme.indexOf('\n## CLI\n'));
  const rows = section.slice(0, section.indexOf('\n## ', 1)).split('\n');
  const commands = rows
    .filter((line) => line.startsWith('| `shoal '))
    .flatMap((line) => {
      const firstCell = line.split(/(?<!\\)\|/)[1] ?? '';
      return [...firstCell.matchAll(/`(shoal [^`]+)`/g)].map((m) => m[1] as string);
    });
  return commands.map((text) => {
    const tokens = text.split(/\s+/).slice(1);
    const end = tokens.findIndex((t) => !/^[a-z][a-z-]*$/.test(t));
    return {
      text,
      words: end === -1 ? tokens : tokens.slice(0, end),
      flags: [...text.matchAll(/--[a-z][a-z-]*/g)].map((m) => m[0]),
    };
  });
};

describe("the README's CLI table", () => {
  const commands = tableCommands();

  it('lists the commands', () => {
    expect(commands.length).toBeGreaterThan(15);
  });

  it.each(commands.map((c) => [c.text, c] as const))('%s takes --help and its flags', (_, c) => {
    const help = shoal([...c.words, '--help']);
    expect(help.stderr).toBe('');
    expect(help.status).toBe(0);
    expect(help.stdout.startsWith(`Usage: shoal ${c.words.join(' ')} `)).toBe(true);
    const options = help.stdout.slice(help.stdout.indexOf('Options:'));
    for (const flag of c.flags) expect(options).toMatch(new RegExp(`${flag}\\b`));
    // Each option says its default once (commander adds one; a description must not repeat it).
    const described = options.split(/\n(?= {2}-)/);
    for (const option of described) {
      expect(option.match(/\(default:/g)?.length ?? 0).toBeLessThanOrEqual(1);
      expect(option).not.toMatch(/\(default: [^)]*\) \(default:/);
    }
  });
});
