/**
 * Writes package.json's contributes.configuration from src/extension/settings.ts (which reads the reduction
 * registry), so every method parameter is a setting with its range and description. `npm run settings`;
 * test/unit/settings.test.ts fails when package.json is out of date.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { configurationSections } from '../src/extension/settings';

const file = path.join(__dirname, '..', 'package.json');
const pkg = JSON.parse(fs.readFileSync(file, 'utf8')) as { contributes: Record<string, unknown> };
pkg.contributes.configuration = configurationSections();
fs.writeFileSync(file, JSON.stringify(pkg, null, 2) + '\n');
process.stdout.write(`wrote contributes.configuration to ${file}\n`);
