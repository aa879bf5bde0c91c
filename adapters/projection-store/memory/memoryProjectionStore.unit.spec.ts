import { describeProjectionStoreContract } from '../../../test/contracts/projectionStoreContract';
import { createMemoryProjectionStore } from './memoryProjectionStore';

describeProjectionStoreContract('memory', async () => ({ store: createMemoryProjectionStore() }));
