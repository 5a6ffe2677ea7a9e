/** Tokens and keys the user types once: kept in VS Code's SecretStorage, never in settings. */
import * as vscode from 'vscode';

export interface SecretPrompt {
  /** the SecretStorage key */
  key: string;
  title: string;
  /** what it is for and where it is sent, one sentence */
  purpose: string;
  placeHolder: string;
  /** shown once it is stored */
  stored: string;
  /** shown once an empty entry removed it */
  removed: string;
}

/** Asks for the secret (masked); an empty entry removes the stored one. */
export async function promptForSecret(secrets: vscode.SecretStorage, prompt: SecretPrompt): Promise<void> {
  const stored = await secrets.get(prompt.key);
  const typed = await vscode.window.showInputBox({
    title: prompt.title,
    prompt: `${prompt.purpose} Kept in VS Code's secret storage.${stored ? ' Leave empty to remove the stored one.' : ''}`,
    password: true,
    ignoreFocusOut: true,
    placeHolder: prompt.placeHolder,
    validateInput: (text) => (text.trim() === '' || /^\S+$/.test(text.trim()) ? undefined : 'It has no spaces.'),
  });
  if (typed === undefined) return;
  if (typed.trim() === '') {
    await secrets.delete(prompt.key);
    void vscode.window.showInformationMessage(`FiCoCo: ${prompt.removed}`);
  } else {
    await secrets.store(prompt.key, typed.trim());
    void vscode.window.showInformationMessage(`FiCoCo: ${prompt.stored}`);
  }
}
