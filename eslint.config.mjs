// ESLint: the TypeScript rules, and the layers of docs/architecture.md as import rules, so a wrong-way import fails
// `npm test`. Formatting is Prettier's (eslint-config-prettier turns off the rules that would fight it).
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import { importX } from 'eslint-plugin-import-x';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';
import globals from 'globals';
import tseslint from 'typescript-eslint';

/** Each layer and the layers it must not import (docs/architecture.md, "Layers"). */
const layers = [
  {
    target: 'src/common',
    from: ['src', 'webview'],
    except: ['common'],
    why: 'src/common imports nothing of the project',
  },
  {
    target: 'src/flops',
    from: ['src', 'webview'],
    except: ['flops', 'common'],
    why: 'src/flops is pure arithmetic over src/common (the AnyRes geometry)',
  },
  {
    target: 'src/report',
    from: ['src', 'webview'],
    except: ['report'],
    why: 'src/report draws charts and imports nothing of the project',
  },
  {
    target: 'src/reduction',
    from: ['src', 'webview'],
    except: ['reduction', 'common'],
    why: 'src/reduction is pure TypeScript: it uses src/common only',
  },
  {
    target: 'src/protocol',
    from: ['src', 'webview'],
    except: ['protocol', 'common'],
    why: 'src/protocol is the contract: plain types and validators over src/common',
  },
  {
    target: 'src/hub',
    from: ['src', 'webview'],
    except: ['hub', 'common'],
    why: "src/hub runs in the extension's process: Node and src/common only, no ONNX Runtime",
  },
  {
    target: 'src/engine',
    from: ['src/host', 'src/extension', 'src/protocol', 'src/hub', 'src/cli', 'src/client', 'src/server', 'webview'],
    why: 'src/engine sits below the host, the CLI and the extension',
  },
  {
    target: 'src/host',
    from: ['src/extension', 'src/hub', 'src/cli', 'src/client', 'src/server', 'webview'],
    why: 'src/host wraps the engine for the protocol; it knows nothing of VS Code',
  },
  {
    target: 'src/client',
    from: ['src', 'webview'],
    except: ['client', 'protocol', 'common'],
    why: 'src/client forks the engine process and speaks src/protocol to it: Node, src/protocol and src/common only',
  },
  {
    target: 'src/server',
    from: ['src/engine', 'src/host', 'src/extension', 'src/cli', 'webview'],
    why: 'src/server serves engine processes over HTTP through src/client; it never loads the engine itself',
  },
  {
    target: 'src/extension',
    from: ['src/engine', 'src/host', 'src/cli', 'src/server', 'webview'],
    why: 'src/extension never loads the engine: it talks to it through src/protocol',
  },
  {
    target: 'src/cli',
    from: ['src/extension', 'src/host', 'webview'],
    why: 'src/cli runs the engine itself, without VS Code',
  },
  {
    target: 'webview',
    from: ['src'],
    except: ['protocol'],
    why: 'the webview is browser code: it shares src/protocol only',
  },
  {
    target: 'src/index.ts',
    from: [
      'src/extension',
      'src/host',
      'src/cli',
      'src/client',
      'src/server',
      'src/protocol',
      'src/flops',
      'src/report',
      'webview',
    ],
    why: "src/index.ts is the library: the engine in the caller's process, without VS Code, the CLI or engine processes",
  },
  {
    target: 'src',
    from: ['src/index.ts'],
    why: "src/index.ts is the library's outer face: nothing inside src imports it",
  },
  { target: 'bench', from: ['test'], why: 'benchmarks do not import tests' },
];

export default tseslint.config(
  {
    ignores: [
      'dist/',
      'dist-vsix/',
      'node_modules/',
      '.cache/',
      'test-results/',
      'models/',
      'test/fixtures/',
      'bench/results/',
      'media/',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  { files: ['scripts/**/*.mjs', 'eslint.config.mjs'], languageOptions: { globals: globals.node } },
  {
    plugins: { 'import-x': importX },
    settings: {
      'import-x/resolver-next': [
        createTypeScriptImportResolver({
          project: ['tsconfig.json', 'webview/tsconfig.json'],
          noWarnOnMultipleProjects: true,
        }),
      ],
    },
    rules: {
      'import-x/no-restricted-paths': [
        'error',
        {
          zones: layers.map(({ target, from, except, why }) => ({
            target: `./${target}`,
            from: from.map((f) => `./${f}`),
            except: except?.map((e) => `./${e}`),
            message: why,
          })),
        },
      ],
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' },
      ],
      // A closure may read a variable assigned after it is made (a wasm instance's own memory, say).
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
    },
  },
  prettier,
);
