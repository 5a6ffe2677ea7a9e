import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { BUDGET_PATTERN, budgetLabel, parseBudget, readableBudget } from '../../src/common/budget';
import { budgetArg, budgetsArg } from '../../src/cli/args';
import {
  MAIN_SETTINGS,
  budgetChoiceDescription,
  choiceTarget,
  configurationSections,
  loadParamsOf,
  paramSettingKey,
  quantizationFor,
  quantizationSettingFor,
  readSettings,
} from '../../src/extension/settings';
import { ficocoV } from '../../src/reduction/methods/ficocoV';
import { METHODS, resolveParams } from '../../src/reduction/registry';

const packageJson = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as {
  contributes: {
    configuration: {
      properties: Record<string, { scope?: string; minimum?: number; maximum?: number; enum?: string[] }>;
    }[];
    commands: { command: string; category: string }[];
  };
  capabilities?: unknown;
};
const declared = Object.assign(
  {},
  ...packageJson.contributes.configuration.map((section) => section.properties),
) as Record<string, { scope?: string; minimum?: number; maximum?: number; enum?: string[]; pattern?: string }>;

function settingsFrom(values: Record<string, unknown>) {
  return readSettings((key) => values[key]);
}

describe('settings', () => {
  test('package.json declares exactly what src/extension/settings.ts generates (run `npm run settings`)', () => {
    assert.deepEqual(packageJson.contributes.configuration, JSON.parse(JSON.stringify(configurationSections())));
  });

  test('every method parameter is a setting with its range or choices', () => {
    for (const method of METHODS) {
      for (const [name, spec] of Object.entries(method.params)) {
        const setting = declared[paramSettingKey(method.name, name)];
        assert.ok(setting, `${method.name}.${name}`);
        if (spec.type === 'number' || spec.type === 'integer')
          assert.deepEqual([setting.minimum, setting.maximum], [spec.min, spec.max]);
        if (spec.type === 'enum') assert.deepEqual(setting.enum, spec.values);
      }
    }
    assert.deepEqual(declared['ficoco.reduction.method']?.enum, ['auto', 'none', ...METHODS.map((m) => m.name)]);
    assert.equal(MAIN_SETTINGS['ficoco.reduction.method'].default, 'auto');
  });

  test('hardware settings are machine-scoped; every command is in the FiCoCo category', () => {
    for (const key of [
      'ficoco.modelPath',
      'ficoco.provider',
      'ficoco.threads',
      'ficoco.quantization',
      'ficoco.quantizationByModel',
      'ficoco.hubEndpoint',
      'ficoco.engine',
      'ficoco.engineModel',
    ])
      assert.equal(declared[key]?.scope, 'machine', key);
    for (const command of packageJson.contributes.commands) assert.equal(command.category, 'FiCoCo', command.command);
  });

  test('works in Restricted Mode: a workspace can set only settings that change how an answer is reduced or its length', () => {
    // Without the declaration VS Code disables the extension in an untrusted workspace (the chat view vanishes).
    assert.deepEqual(packageJson.capabilities, { untrustedWorkspaces: { supported: true }, virtualWorkspaces: true });
    // What could run code or read files (model folders, servers, threads) belongs to the machine, not the workspace.
    const workspaceSettable = Object.keys(declared).filter((key) => declared[key]!.scope !== 'machine');
    for (const key of workspaceSettable)
      assert.ok(
        key.startsWith('ficoco.reduction.') ||
          [
            'ficoco.maxNewTokens',
            'ficoco.temperature',
            'ficoco.topP',
            'ficoco.topK',
            'ficoco.minP',
            'ficoco.repetitionPenalty',
            'ficoco.seed',
            'ficoco.unloadAfterMinutes',
          ].includes(key),
        `${key} can be set by a workspace: make it machine-scoped or restrict it (capabilities.untrustedWorkspaces)`,
      );
  });

  test('a reduction chosen in the quick pick is saved where it takes effect', () => {
    // A user-settings value is overridden by the workspace's: saving there would change nothing.
    assert.equal(choiceTarget({ workspaceValue: 'fastv' }), 'workspace');
    assert.equal(choiceTarget({ workspaceValue: undefined }), 'global');
    assert.equal(choiceTarget(undefined), 'global');
  });

  test("the quick pick's Budget item says when the budget is not what answers (automatic, or reduction off)", () => {
    assert.equal(budgetChoiceDescription('fastv', '32'), 'now 32 visual tokens per image');
    // auto sends no budget (reductionRequest): a budget chosen then changes nothing until a method is picked.
    assert.equal(
      budgetChoiceDescription('auto', '32'),
      "now the model's recommendation sets it; 32 applies to a method you pick",
    );
    assert.equal(budgetChoiceDescription('none', '32'), 'reduction is off; 32 applies to a method you pick');
  });

  test("nothing set: the defaults, auto reduction (the model's recommendation)", () => {
    const { settings, problems } = settingsFrom({});
    assert.deepEqual(problems, []);
    assert.deepEqual(settings, {
      modelPath: '',
      engine: 'local',
      engineModel: '',
      provider: 'auto',
      threads: 0,
      quantization: 'none',
      quantizationByModel: {},
      reduction: { method: 'auto', budget: { ratio: 0.11 }, budgetLabel: '11%', params: {} },
      maxNewTokens: 256,
      temperature: 0,
      topP: 1,
      topK: 0,
      minP: 0,
      repetitionPenalty: 1,
      seed: undefined,
      unloadAfterMinutes: 15,
    });
  });

  test('valid values are taken, method parameters included; none turns reduction off', () => {
    const { settings, problems } = settingsFrom({
      'ficoco.provider': 'cpu',
      'ficoco.reduction.method': 'tome',
      'ficoco.reduction.budget': ' 64 ',
      'ficoco.maxNewTokens': 32,
      'ficoco.temperature': 0.7,
      'ficoco.topP': 0.9,
      'ficoco.topK': 40,
      'ficoco.minP': 0.05,
      'ficoco.repetitionPenalty': 1.1,
      'ficoco.seed': 4294967295,
      'ficoco.quantization': 'int4',
      'ficoco.quantizationByModel': { '/models/tiny/': 'none', '/models/llava-7b': 'int8' },
      'ficoco.engine': ' http://gpu-box:8080/v1 ',
      'ficoco.engineModel': ' llava:7b ',
    });
    assert.deepEqual(problems, []);
    assert.equal(settings.engine, 'http://gpu-box:8080/v1');
    assert.equal(settings.engineModel, 'llava:7b');
    assert.equal(settings.quantization, 'int4');
    assert.equal(quantizationFor(settings, '/models/llava-7b'), 'int8');
    assert.equal(quantizationFor(settings, '/models/tiny'), 'none', 'a trailing separator does not matter');
    assert.equal(quantizationFor(settings, '/models/other'), 'int4', 'other models follow ficoco.quantization');
    assert.equal(quantizationSettingFor(settings, '/models/tiny'), 'ficoco.quantizationByModel');
    assert.equal(quantizationSettingFor(settings, '/models/other'), 'ficoco.quantization');
    assert.deepEqual(settings.reduction, { method: 'tome', budget: { tokens: 64 }, budgetLabel: '64', params: {} });
    assert.equal(settings.provider, 'cpu');
    assert.equal(settings.temperature, 0.7);
    assert.deepEqual([settings.topP, settings.topK, settings.minP, settings.repetitionPenalty], [0.9, 40, 0.05, 1.1]);
    assert.equal(settings.seed, 4294967295);
    // VS Code reads a seed left empty as the default, null: a new one for each question.
    assert.deepEqual(settingsFrom({ 'ficoco.seed': null }), settingsFrom({}));
    assert.equal(settingsFrom({ 'ficoco.reduction.method': 'none' }).settings.reduction, undefined);
    const ficoco = settingsFrom({
      'ficoco.reduction.method': 'ficoco-v',
      [paramSettingKey('ficoco-v', 'window')]: 3,
      [paramSettingKey('ficoco-v', 'weights')]: 'paper',
    });
    assert.deepEqual(ficoco.settings.reduction?.params, { window: 3, weights: 'paper' });
  });

  test('ficoco.quantizationByModel: folders read as ficoco.modelPath is; a bad entry is reported and left out alone', () => {
    const { settings, problems } = settingsFrom({
      'ficoco.modelPath': '~/models/llava',
      'ficoco.quantizationByModel': {
        '~/models/llava': 'int4',
        '/models/./other/': 'int8',
        'models/relative': 'int8',
        '/models/shouting': 'INT4',
      },
    });
    const folders = { builtinModel: '/ext/models/tiny', quantizedCache: '/ext/quantized' };
    assert.equal(loadParamsOf(settings, folders).quantization, 'int4', '~ stands for the home folder, as in modelPath');
    assert.equal(quantizationFor(settings, path.join(os.homedir(), 'models', 'llava')), 'int4');
    assert.equal(quantizationFor(settings, '/models/other'), 'int8', 'folders are compared normalized');
    assert.deepEqual(problems, [
      {
        setting: 'ficoco.quantizationByModel',
        message:
          'ficoco.quantizationByModel["models/relative"]: set the absolute path of a model folder (`~` stands for ' +
          'your home folder). Ignoring it.',
      },
      {
        setting: 'ficoco.quantizationByModel',
        message:
          'ficoco.quantizationByModel["/models/shouting"] is "INT4"; expected one of none, int8, int4. Ignoring it.',
      },
    ]);
  });

  test('each invalid value is reported with what is expected, and its default used', () => {
    const { settings, problems } = settingsFrom({
      'ficoco.provider': 'tpu',
      'ficoco.reduction.method': 'magic',
      'ficoco.reduction.budget': 'half',
      'ficoco.maxNewTokens': 0,
      'ficoco.temperature': 'hot',
      'ficoco.unloadAfterMinutes': 2.5,
      'ficoco.threads': -1,
      'ficoco.quantization': 'int3',
      'ficoco.quantizationByModel': ['/models/x', 'int4'],
      'ficoco.engine': 'ftp://gpu-box',
    });
    assert.equal(problems.length, 10);
    const messages = problems.map((problem) => problem.message);
    assert.deepEqual(
      problems.map((problem) => problem.setting).sort(),
      [
        'ficoco.engine',
        'ficoco.maxNewTokens',
        'ficoco.provider',
        'ficoco.quantization',
        'ficoco.quantizationByModel',
        'ficoco.reduction.budget',
        'ficoco.reduction.method',
        'ficoco.temperature',
        'ficoco.threads',
        'ficoco.unloadAfterMinutes',
      ],
      'each problem names the setting to open',
    );
    assert.match(
      messages.join('\n'),
      /ficoco\.quantizationByModel is \["\/models\/x","int4"\]; expected an object from model folders to one of none, int8, int4/,
    );
    assert.match(messages.join('\n'), /ficoco\.quantization is "int3"; expected one of none, int8, int4/);
    assert.match(
      messages.join('\n'),
      /ficoco\.engine is "ftp:\/\/gpu-box"; expected "local" or an http:\/\/ or https:\/\/ address/,
    );
    assert.match(
      messages[0]!,
      /^ficoco\.reduction\.method is "magic"; expected one of auto, none, ficoco-v.*Using the default, "auto"\./,
    );
    assert.match(
      messages.join('\n'),
      /ficoco\.reduction\.budget is "half"; expected a whole number of visual tokens, 1 or more \(e\.g\. 64\), or a share above 0 and up to 100% \(e\.g\. 11% or 0\.11\)\. Using the default, "11%"\./,
    );
    assert.match(
      messages.join('\n'),
      /ficoco\.provider is "tpu"; expected one of auto, cpu, cuda, dml, coreml, webgpu/,
    );
    assert.match(messages.join('\n'), /ficoco\.maxNewTokens is 0; expected a whole number from 1 to 4096/);
    assert.match(messages.join('\n'), /ficoco\.unloadAfterMinutes is 2\.5; expected a whole number/);
    assert.deepEqual(settings, settingsFrom({}).settings);
  });

  test('sampling values the engine and `ficoco ask` refuse are reported with their range, and the default used', () => {
    const reported = (values: Record<string, unknown>) => {
      const { settings, problems } = settingsFrom(values);
      assert.deepEqual(settings, settingsFrom({}).settings);
      return problems.map((problem) => `${problem.setting}: ${problem.message}`);
    };
    assert.deepEqual(
      reported({
        'ficoco.topP': 0,
        'ficoco.topK': 2.5,
        'ficoco.minP': 1.5,
        'ficoco.repetitionPenalty': 0,
        'ficoco.seed': 2 ** 32,
      }),
      [
        'ficoco.topP: ficoco.topP is 0; expected a number above 0, up to 1. Using the default, 1.',
        'ficoco.topK: ficoco.topK is 2.5; expected a whole number, 0 or more. Using the default, 0.',
        'ficoco.minP: ficoco.minP is 1.5; expected a number from 0 to 1. Using the default, 0.',
        'ficoco.repetitionPenalty: ficoco.repetitionPenalty is 0; expected a number above 0. Using the default, 1.',
        'ficoco.seed: ficoco.seed is 4294967296; expected a whole number from 0 to 4294967295, or null for a new one ' +
          'for each question. Using the default, null.',
      ],
    );
    assert.deepEqual(
      reported({
        'ficoco.topP': 1.5,
        'ficoco.topK': -1,
        'ficoco.minP': '0.1',
        'ficoco.repetitionPenalty': 'high',
        'ficoco.seed': 1.5,
      }),
      [
        'ficoco.topP: ficoco.topP is 1.5; expected a number above 0, up to 1. Using the default, 1.',
        'ficoco.topK: ficoco.topK is -1; expected a whole number, 0 or more. Using the default, 0.',
        'ficoco.minP: ficoco.minP is "0.1"; expected a number from 0 to 1. Using the default, 0.',
        'ficoco.repetitionPenalty: ficoco.repetitionPenalty is "high"; expected a number above 0. Using the default, 1.',
        'ficoco.seed: ficoco.seed is 1.5; expected a whole number from 0 to 4294967295, or null for a new one for ' +
          'each question. Using the default, null.',
      ],
    );
  });

  test('an out-of-range method parameter is reported and left to its default', () => {
    const { settings, problems } = settingsFrom({
      'ficoco.reduction.method': 'ficoco-v',
      [paramSettingKey('ficoco-v', 'window')]: 99,
      [paramSettingKey('ficoco-v', 'weights')]: 'paper',
    });
    assert.equal(problems.length, 1);
    assert.equal(problems[0]!.setting, 'ficoco.reduction.ficoco-v.window');
    assert.match(
      problems[0]!.message,
      /^ficoco\.reduction\.ficoco-v\.window: ficoco-v\.window is 99; expected an integer in \[1, 16\]/,
    );
    assert.deepEqual(settings.reduction?.params, { weights: 'paper' });
  });

  test('a schedule setting: its pattern takes the texts the parameter takes, and a bad one is reported', () => {
    const schedule = paramSettingKey('ficoco-v', 'schedule');
    const pattern = new RegExp(declared[schedule]!.pattern!, 'u');
    const accepted = (text: string) => {
      try {
        resolveParams(ficocoV, { schedule: text });
        return true;
      } catch {
        return false;
      }
    };
    for (const text of ['', ' ', '42', '3, 2,1', '0.5,.25,1.', '3,-1', 'two', '3,,1', '1e3', ',3', '3;2'])
      assert.equal(pattern.test(text), accepted(text), text);
    // All zeros fit the pattern: the Settings editor cannot add up, and the parameter's check says why it is refused.
    assert.ok(pattern.test('0,0') && !accepted('0,0'));
    const { settings, problems } = settingsFrom({ 'ficoco.reduction.method': 'ficoco-v', [schedule]: '3,-1' });
    assert.deepEqual(
      problems.map((problem) => problem.message),
      [
        'ficoco.reduction.ficoco-v.schedule: ficoco-v.schedule is "3,-1": "-1" is negative; give a share of 0 or more ' +
          'per reducing layer, separated by commas (e.g. 3,2,1), or leave it empty for an even schedule. Using the default.',
      ],
    );
    assert.deepEqual(settings.reduction?.params, {});
    const good = settingsFrom({ 'ficoco.reduction.method': 'ficoco-v', [schedule]: '3,2,1' });
    assert.deepEqual(good.settings.reduction?.params, { schedule: '3,2,1' });
  });

  test('budgets: one grammar for settings and the CLI — a count, a percentage or a decimal share', () => {
    const good: [string, object][] = [
      ['64', { tokens: 64 }],
      ['11%', { ratio: 0.11 }],
      ['12.5 %', { ratio: 0.125 }],
      ['0.25', { ratio: 0.25 }],
      ['.5', { ratio: 0.5 }],
      ['100%', { ratio: 1 }],
    ];
    good.push(
      ['0.001', { ratio: 0.001 }],
      ['0.5%', { ratio: 0.005 }],
      ['99.5 %', { ratio: 0.995 }],
      ['100.0%', { ratio: 1 }],
    );
    for (const [text, budget] of good) {
      assert.deepEqual(parseBudget(text), budget, text);
      assert.deepEqual(budgetArg(text), budget, `--budget ${text}`);
      assert.ok(
        new RegExp(declared['ficoco.reduction.budget'].pattern!).test(text),
        `the settings pattern accepts ${text}`,
      );
    }
    for (const bad of [
      '0',
      '00',
      '0%',
      '0.0 %',
      '101%',
      '150%',
      '100.5%',
      '-4',
      '-5',
      '2.5',
      '1.0',
      '0.0',
      '.0',
      'all',
      '',
      '.',
    ]) {
      assert.equal(parseBudget(bad), undefined, bad);
      // The Settings editor flags what the extension would replace by the default at the next question.
      assert.equal(
        new RegExp(declared['ficoco.reduction.budget'].pattern!).test(bad),
        false,
        `the settings pattern refuses ${bad}`,
      );
      assert.throws(() => budgetArg(bad), /must be a whole number of visual tokens/, `--budget ${bad}`);
    }
    assert.equal(declared['ficoco.reduction.budget'].pattern, BUDGET_PATTERN);
  });

  test('budget labels: budgets a list can hold read differently, ordinary ones plainly, and parse back', () => {
    const labels = (list: string) => budgetsArg(list).map(budgetLabel);
    assert.deepEqual(labels('11.5%,11.54%'), ['11.5%', '11.54%']);
    assert.deepEqual(labels('0.115,0.1154,0.11541'), ['11.5%', '11.54%', '11.541%']);
    assert.deepEqual(labels('64,11%,25%,5.6%,2.8%,0.333,100%'), ['64', '11%', '25%', '5.6%', '2.8%', '33.3%', '100%']);
    assert.deepEqual(labels('0.11'), ['11%']);
    // 5.6% is the share 0.056, as 0.056 is: refused as given twice, not two rows alike.
    assert.deepEqual(parseBudget('5.6%'), { ratio: 0.056 });
    assert.throws(() => budgetsArg('5.6%,0.056'), /names the same one twice \(5\.6% and 0\.056\)/);
    // tune's default shares on a tiled model: whole percentages, not 100 × 0.57's 56.99999999999999.
    assert.deepEqual(
      [8, 7, 6, 5, 4, 3, 2, 1].map((ninths) => budgetLabel({ ratio: Math.round((100 * ninths) / 9) / 100 })),
      ['89%', '78%', '67%', '56%', '44%', '33%', '22%', '11%'],
    );
    // A remote engine sends the label as the request's budget: it must read back as the same budget, however small.
    const shares = [0.1154, 0.056, 1 / 3, 2 / 3, 1e-9, 1e-13, Number.MIN_VALUE, 0.999, 1 - Number.EPSILON];
    for (let i = 1; i < 2000; i++) shares.push(i / 2000, (i / 2000) ** 9);
    for (const ratio of shares) assert.deepEqual(parseBudget(budgetLabel({ ratio })), { ratio }, `${ratio}`);
    assert.equal(budgetLabel({ ratio: 1 / 3 }), '33.33333333333333%');
    assert.equal(budgetLabel({ ratio: 1e-13 }), '0.00000000001%');
  });

  test('a budget as a person reads it: a share to 3 significant digits', () => {
    assert.deepEqual(
      [{ tokens: 64 }, { ratio: 0.11 }, { ratio: 1 / 3 }, { ratio: 0.1154 }, { ratio: 1e-13 }, { ratio: 1 }].map(
        readableBudget,
      ),
      ['64', '11%', '33.3%', '11.5%', '0.00000000001%', '100%'],
    );
  });
});
