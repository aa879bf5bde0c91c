/** Time comes in through a Clock so domain code and tests never read the wall clock. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}
