/**
 * Bad input from the user: the CLI prints the message as one line on stderr and
 * exits with code 2, never a stack trace.
 * @module
 */

/** An error in flags, config, a filter expression or the environment the user can fix. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}
