import pino from 'pino';

/** Structured logger; components get child loggers (`log.child({component: 'haproxy'})`). */
export interface Logger {
  debug(fields: object, msg: string): void;
  info(fields: object, msg: string): void;
  warn(fields: object, msg: string): void;
  error(fields: object, msg: string): void;
  child(fields: object): Logger;
}

/** JSON logs to stderr (stdout stays free for command output). Level from PROXYMGR_LOG_LEVEL, default info. */
export function createLogger(fields: object = {}, level = process.env.PROXYMGR_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { pid: process.pid, ...fields } }, pino.destination(2));
}

/** A logger that drops everything; for unit tests of pure logic. */
export const silentLogger: Logger = pino({ level: 'silent' });
