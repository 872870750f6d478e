/** Progress lines of the bench on stdout. */
export function say(message: string): void {
  process.stdout.write(`[bench] ${message}\n`);
}
