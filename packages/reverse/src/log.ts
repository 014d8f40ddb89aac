/** The slice of a pino logger this package writes to. */
export interface ReverseLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}
