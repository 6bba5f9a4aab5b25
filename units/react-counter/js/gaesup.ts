// The bindings, bound to this unit's React.
import * as React from 'react';
import { reactBindings } from 'gaesup-bindings';

export const { UnitProvider, useSharedState, useStatePath, useContainerEvent } = reactBindings(React);
