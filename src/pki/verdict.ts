// One answer from two sources: the listener engine's verdict (tls/verify-engine.ts, the
// judge) and the explainer's reasons (verify.ts). The engine decides accepted/refused;
// the explainer's reasons are shown when they account for the engine's result. When they
// do not, the engine's own sentence is shown first, and `agrees` is false so the tools
// can say so: a disagreement is a bug in the explainer, never a second opinion.
import { RESULT_OF_CODE, type VerifyResult } from './verify.js';

/** The parts of an engine verdict this needs (structural: pki does not import tls). */
export interface JudgeVerdict {
  accepted: boolean;
  /** 'ok' or the listener's handshake result */
  result: string;
  message?: string;
  /** the TLS layer refused the certificate before any check could run */
  handshakeError?: string;
  warnings: string[];
}

export interface ShownReason {
  /** an explainer code (verify.ts VerifyCode), or the engine's result when no explanation fits */
  code: string;
  message: string;
  fix: string;
}

export interface Reconciled {
  accepted: boolean;
  reasons: ShownReason[];
  warnings: string[];
  /** the explainer reached the engine's verdict (and, for a refusal, its reason) */
  agrees: boolean;
}

export function reconcile(explained: VerifyResult, engine: JudgeVerdict | undefined): Reconciled {
  if (!engine) return { accepted: explained.accepted, reasons: explained.reasons, warnings: explained.warnings, agrees: true };
  const warnings = [...new Set([...explained.warnings, ...engine.warnings])];
  if (engine.accepted) return { accepted: true, reasons: [], warnings, agrees: explained.reasons.length === 0 };
  // a refusal by the TLS layer itself (a key it cannot use) has no explanation code of its
  // own: any reason the explainer finds accounts for it
  const agrees = engine.handshakeError ? explained.reasons.length > 0 : explained.reasons.some((r) => RESULT_OF_CODE[r.code] === engine.result);
  const reasons: ShownReason[] = agrees
    ? explained.reasons
    : [
        {
          code: engine.result,
          message: engine.message ?? `the listener refuses it (${engine.result})`,
          fix: 'fix what the message names; portcullis run logs the same sentence (tls_handshake_failed)',
        },
        ...explained.reasons,
      ];
  return { accepted: false, reasons, warnings, agrees };
}
