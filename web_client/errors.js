// What a person reads when a request fails: the same wording in the widget, the console and
// the dashboard, by error code (docs/protocol.md, "Error codes"), from the catalogue
// ("common.error.<code>"); the server's own message (English, for developers) only when
// the code has no text of ours.

import { t } from './i18n.js';
import { ShopcallError } from './protocol.js';

const CONNECTION = new Set(['network', 'disconnected', 'timeout']);

/** Text for a failed request. */
export function errorText(err) {
  if (!(err instanceof ShopcallError) && !(err && err.code)) return t('common.error.generic');
  const code = CONNECTION.has(err.code) ? 'network' : err.code;
  const key = `common.error.${code}`;
  const text = t(key);
  if (text !== key) return text;
  return err.message || t('common.error.generic');
}
