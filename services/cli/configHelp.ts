import type { TSchema } from '@sinclair/typebox';
import { stringify } from 'yaml';
import { configKeys } from '../shared/configKeys';

/** A default as YAML writes it (`127.0.0.1`, `""`, `[ 127.0.0.1:9092 ]`). */
const yamlValue = (value: unknown): string =>
  value === undefined ? '(none)' : stringify(value, { collectionStyle: 'flow' }).trim();

const wrap = (text: string, width: number, indent: string): string[] => {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line !== '' && indent.length + line.length + 1 + word.length > width) {
      lines.push(indent + line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  if (line !== '') lines.push(indent + line);
  return lines;
};

/**
 * `--help`'s list of a role's configuration: every key as its YAML path with its default, then
 * its variable, allowed values and description, e.g.
 *
 *     listen.port: 5003
 *         SHOAL_LISTEN_PORT · listen port
 */
export const configHelp = (schema: TSchema, width = 100): string => {
  const lines = [
    '',
    'Configuration (YAML path: default; the variable overrides the file, flags override both):',
  ];
  for (const key of configKeys(schema)) {
    lines.push(`  ${key.path.join('.')}: ${yamlValue(key.default)}`);
    const about = [
      key.env ?? '(config file only)',
      ...(key.values === undefined ? [] : [`one of ${key.values.map(String).join(' | ')}`]),
      ...(key.description === undefined ? [] : [key.description]),
    ].join(' · ');
    lines.push(...wrap(about, width, '      '));
  }
  return `${lines.join('\n')}\n`;
};
